"""Console logging like ``func start``, without the app's lines repeated by replays.

Core Tools prints one timestamped line per event; orchestrator code runs again on every replay,
so app log records emitted while the SDK context says ``is_replaying`` are dropped (the host's
own records are kept).
"""

from __future__ import annotations

import contextlib
import logging
import select
import sys
import threading
import time
from collections.abc import Iterator
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
    """Collects formatted records; a background thread writes them every 50 ms, a few lines per write.

    A write per record is a system call per invocation: with ``PYTHONUNBUFFERED`` (which test
    harnesses and process managers set) ``sys.stdout`` writes through, and under load those writes
    were an eighth of the host's event-loop time, more than running a no-op activity. A 50 ms
    delay on the console costs nothing; warnings and errors are written at once. Each write holds
    whole lines and at most ``PIPE_BUF`` bytes, so lines of the host and of its worker processes,
    sharing one pipe, never interleave mid-line.
    """

    def __init__(self, stream: TextIO, interval: float = 0.05):
        super().__init__(stream)
        self._interval = interval
        self._lines: list[str] = []
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.really_flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)

    def flush(self) -> None:
        pass

    def really_flush(self) -> None:
        assert self.lock is not None  # Handler.__init__ creates it (an RLock: emit holds it already)
        with self.lock:
            lines, self._lines = self._lines, []
            if not self.stream:
                return
            for chunk in _chunks(lines, select.PIPE_BUF):
                self.stream.write(chunk)
                self.stream.flush()
            if hasattr(self.stream, "flush"):
                self.stream.flush()  # what other code (print) left in the stream's buffer

    def _flusher(self) -> None:
        while True:
            time.sleep(self._interval)
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stdout (a pipe into `head`)
                self.really_flush()

    def close(self) -> None:
        self.really_flush()
        super().close()


def _chunks(lines: list[str], limit: int) -> Iterator[str]:
    """Consecutive lines joined into texts of at most ``limit`` UTF-8 bytes (a longer line alone)."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        length = len(line) if line.isascii() else len(line.encode())
        if chunk and size + length > limit:
            yield "".join(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += length
    if chunk:
        yield "".join(chunk)


def flush() -> None:
    """Write the buffered records now: before output that bypasses logging, so the order holds."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BufferedStreamHandler):
            handler.really_flush()


def setup(level: str = "INFO") -> None:
    handler = BufferedStreamHandler(sys.stdout)
    handler.setFormatter(FuncFormatter("[%(asctime)s] %(message)s"))
    handler.addFilter(ReplayFilter())
    handler.addFilter(ConverterAdvisoryFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
