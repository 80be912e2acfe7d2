"""The host's cheaper paths (issue 10) say the same as the paths they replaced.

Status bodies are encoded once per change of the instance, and log records are written a few lines
per system call: a stale status or a lost, reordered or torn log line would be the price of a bug.
"""

from __future__ import annotations

import io
import json
import logging
import select

import pytest

from durable_host.logs import BufferedStreamHandler, _chunks
from durable_host.model import Instance, RuntimeStatus
from durable_host.status import status_body, status_json

pytestmark = pytest.mark.unit


def instance() -> Instance:
    return Instance("abc", "hello", "e1", RuntimeStatus.Running, '{"x": 1}', 1_700_000_000.0, 1_700_000_001.5)


def test_a_status_body_is_encoded_once_and_again_after_every_change() -> None:
    inst = instance()
    first = status_json(inst, show_input=True)
    assert json.loads(first) == json.loads(json.dumps(status_body(inst)))
    assert status_json(inst, show_input=True) is first  # nothing changed: the same bytes
    assert json.loads(status_json(inst, show_input=False))["input"] is None
    for change in (
        lambda: setattr(inst, "custom_status", '{"done": 3}'),
        lambda: setattr(inst, "updated", inst.updated + 1.0),
        lambda: setattr(inst, "status", RuntimeStatus.Completed),
        lambda: setattr(inst, "output", '"all done"'),
        lambda: setattr(inst, "version", "2.0"),
    ):
        before = status_json(inst, show_input=True)
        change()
        after = status_json(inst, show_input=True)
        assert json.loads(after) == json.loads(json.dumps(status_body(inst))) != json.loads(before)


def test_log_lines_are_joined_whole_and_within_the_atomic_pipe_write() -> None:
    lines = [f"line {i} " + "é" * (i * 37 % 300) + "\n" for i in range(200)] + ["x" * 10_000 + "\n"]
    chunks = list(_chunks(lines, select.PIPE_BUF))
    assert "".join(chunks) == "".join(lines)
    for chunk in chunks:
        assert chunk.endswith("\n")
        assert len(chunk.encode()) <= select.PIPE_BUF or chunk.count("\n") == 1


def test_records_wait_for_the_flusher_but_warnings_are_written_at_once() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=3600.0)  # the flusher does not run during the test
    logger = logging.getLogger("test_host_cpu_paths")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("first")
        assert stream.getvalue() == ""
        logger.warning("second")
        assert stream.getvalue() == "first\nsecond\n"  # in order, the buffered line first
        logger.info("third")
        handler.really_flush()
        assert stream.getvalue() == "first\nsecond\nthird\n"
    finally:
        logger.removeHandler(handler)
