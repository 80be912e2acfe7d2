"""Console logging like ``func start``, without the app's lines repeated by replays.

Core Tools prints one timestamped line per event; orchestrator code runs again on every replay,
so app log records emitted while the SDK context says ``is_replaying`` are dropped (the host's
own records are kept).
"""

from __future__ import annotations

import logging
import sys
import time

from . import episode


class ReplayFilter(logging.Filter):
    """Drop app records emitted by orchestrator code while it replays."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = getattr(episode.current, "context", None)
        if ctx is None or record.name.startswith("durable_host"):
            return True
        return not ctx.is_replaying


class FuncFormatter(logging.Formatter):
    """``[2024-05-01T10:00:00.123Z] message`` with tracebacks, as Core Tools prints."""

    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + \
            f".{int(record.msecs):03d}Z"


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(FuncFormatter("[%(asctime)s] %(message)s"))
    handler.addFilter(ReplayFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
