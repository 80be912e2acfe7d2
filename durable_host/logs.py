"""Console logging like ``func start``, without the app's lines repeated by replays.

Core Tools prints one timestamped line per event; orchestrator code runs again on every replay,
so app log records emitted while the SDK context says ``is_replaying`` are dropped (the host's
own records are kept).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from . import sdk_adapter


class ReplayFilter(logging.Filter):
    """Drop app records emitted by orchestrator code while it replays."""

    def filter(self, record: logging.LogRecord) -> bool:
        replaying = sdk_adapter.replaying()
        if replaying is None or record.name.startswith("durable_host"):
            return True
        return not replaying


class ConverterAdvisoryFilter(logging.Filter):
    """Drop azure-functions' one-time ``df_loads ... without expected_type`` advisory.

    Microsoft's ``activityTrigger`` converter calls ``df_loads`` without a type, so no app can act on
    the advice, and each worker process would print it once more. It stays visible at DEBUG.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "azure.functions.DurableFunctions" and "without expected_type" in record.getMessage():
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class FuncFormatter(logging.Formatter):
    """``[2024-05-01T10:00:00.123Z] message`` with tracebacks, as Core Tools prints."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """Writes without a flush per record; a background thread flushes every 50 ms.

    A flush per line is a system call per invocation, which cost more than running a no-op
    activity; a 50 ms delay on the console costs nothing.
    """

    def __init__(self, stream: TextIO, interval: float = 0.05):
        super().__init__(stream)
        self._interval = interval
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def flush(self) -> None:
        pass

    def really_flush(self) -> None:
        assert self.lock is not None  # Handler.__init__ creates it
        with self.lock:
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()

    def _flusher(self) -> None:
        while True:
            time.sleep(self._interval)
            self.really_flush()

    def close(self) -> None:
        self.really_flush()
        super().close()


def setup(level: str = "INFO") -> None:
    handler = BufferedStreamHandler(sys.stdout)
    handler.setFormatter(FuncFormatter("[%(asctime)s] %(message)s"))
    handler.addFilter(ReplayFilter())
    handler.addFilter(ConverterAdvisoryFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
