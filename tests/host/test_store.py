"""The task hub's writer: what ``after_commit`` promises, against a real SQLite file read by a second connection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from durable_host.activities import WorkItem
from durable_host.store import Operation, Store

pytestmark = pytest.mark.unit


def _activities_seen_by_another_connection(path: Path) -> int:
    with sqlite3.connect(path) as other:
        count: int = other.execute("SELECT count(*) FROM activities").fetchone()[0]
        return count


@pytest.mark.parametrize("write", ["submit_nowait", "submit"])
def test_after_commit_runs_once_the_writes_of_the_same_loop_iteration_are_durable(tmp_path: Path, write: str) -> None:
    """The engine registers an activity's dispatch before it queues the episode's writes, in the same iteration:
    the dispatch must still wait for them (a worker must never run an activity whose scheduling a crash can undo)."""
    path = tmp_path / "hub.db"

    async def scenario() -> list[int]:
        store = Store(path)
        store.start(asyncio.get_running_loop())
        seen: list[int] = []
        done = asyncio.Event()

        def dispatch() -> None:
            seen.append(_activities_seen_by_another_connection(path))
            done.set()

        for task_id in range(3):
            work = WorkItem(task_id + 1, "instance", "execution", task_id, "say", None)
            store.after_commit(dispatch if task_id == 2 else lambda: None)
            operation: Operation = [store.save_activity(work)]
            submit: Callable[[Operation], object] = getattr(store, write)
            submit(operation)
        await asyncio.wait_for(done.wait(), 10)
        await store.close()
        return seen

    assert asyncio.run(scenario()) == [3]


def test_an_operation_that_fails_halfway_leaves_nothing_and_the_others_commit(tmp_path: Path) -> None:
    """Writes of one operation are all or nothing: an activity saved and then a statement that fails (a bug)
    must not leave the activity committed, while the other operations of the same commit are kept."""
    path = tmp_path / "hub.db"

    async def scenario() -> BaseException | None:
        store = Store(path)
        store.start(asyncio.get_running_loop())
        store.submit_nowait([store.save_activity(WorkItem(1, "a", "e", 0, "say", None))])
        broken: Operation = [
            store.save_activity(WorkItem(2, "b", "e", 0, "say", None)),
            ("INSERT INTO nowhere VALUES (?)", [(1,)]),
        ]
        failed = store.submit(broken)
        store.submit_nowait([store.save_activity(WorkItem(3, "c", "e", 0, "say", None))])
        error = None
        try:
            await asyncio.wait_for(failed, 10)
        except sqlite3.Error as exc:
            error = exc
        await store.close()
        return error

    assert isinstance(asyncio.run(scenario()), sqlite3.OperationalError)
    with sqlite3.connect(path) as other:
        ids = [row[0] for row in other.execute("SELECT id FROM activities ORDER BY id")]
    assert ids == [1, 3]
