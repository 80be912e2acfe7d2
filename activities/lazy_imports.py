"""The activities' heavy modules (torch, torchvision, Pillow), imported on first use, one thread at a time.

torchvision's package imports itself in a cycle (``torchvision`` -> ``models`` -> ``transforms`` ->
``torchvision``) that is safe in one thread. Two threads importing it at once, the prewarm thread and a
first activity, failed with "cannot import name ... from partially initialized module". So every first
import of those modules goes through one lock; later calls find the module imported and only take the lock.
"""

from __future__ import annotations

import importlib
import threading

_lock = threading.Lock()


def import_once(module: str) -> None:
    """Import ``module`` (and so torch and torchvision) unless it is imported; the caller then imports names
    from it with a plain ``from ... import``, which finds it in ``sys.modules``."""
    with _lock:
        importlib.import_module(module)
