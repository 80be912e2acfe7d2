"""Message-driven use: where results go (a reply queue or a signed callback), and the queues themselves.

Shared by the starters (which check a ``reply_to`` before a task exists) and the delivery activity (which
sends to it), below both: it knows settings, the URL policy and azure-storage-queue, nothing above them.
"""
