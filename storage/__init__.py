"""Storage layer: blobs (Azure Blob Storage, Azurite or a local folder) and results in SQL.

Knows azure-storage-blob and SQLAlchemy only; callers hand in and get back the dataclasses of
``contracts``. Import from the submodules (``storage.blobs``, ``storage.database``, ``storage.results``):
this file re-exports nothing, so importing one of them does not load the others' libraries.
"""
