"""The task hub on disk: SQLite in WAL mode, written by one thread with group commit.

Every state change is an *operation* (a list of SQL statements) queued to a writer thread.
The writer drains everything queued so far into one transaction, so a burst of thousands of
episodes costs a handful of commits. Operations commit in queue order, which gives causal
consistency for free: anything derived from a change is queued after it, so it can never be
durable without it. Callers that must not act before a change is durable (the 202 of a start)
await the future ``submit`` returns; side effects that must not outrun it (handing an activity to a
worker) go through ``after_commit``. WAL with ``synchronous=NORMAL`` survives SIGKILL of the
host (the OS has the pages); only a power cut can lose the last transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import queue
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .activities import WorkItem
from .model import ControlKind, Instance, Message, ParentRef, RuntimeStatus

log = logging.getLogger("durable_host.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances(
  instance_id TEXT PRIMARY KEY, name TEXT NOT NULL, execution_id TEXT NOT NULL,
  status TEXT NOT NULL, input TEXT, output TEXT, custom_status TEXT,
  created_time REAL NOT NULL, last_updated_time REAL NOT NULL, parent TEXT, version TEXT,
  next_task_id INTEGER NOT NULL DEFAULT 0, action_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS history(
  instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY(instance_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY, instance_id TEXT NOT NULL, execution_id TEXT,
  visible_at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_instance ON messages(instance_id);
CREATE TABLE IF NOT EXISTS activities(
  id INTEGER PRIMARY KEY, instance_id TEXT NOT NULL, execution_id TEXT NOT NULL,
  task_id INTEGER NOT NULL, name TEXT NOT NULL, input TEXT);
CREATE TABLE IF NOT EXISTS timer_status(
  function TEXT PRIMARY KEY, last TEXT, next TEXT NOT NULL, last_updated TEXT NOT NULL);
"""

Statement = tuple[str, Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]]]
Operation = list[Statement]
# What the writer thread takes: statements to execute, or a read to run, with the future to resolve and the
# callbacks to run on the event loop once it is committed.
_Work = Operation | Callable[[sqlite3.Connection], Any]
_Item = tuple[_Work, "asyncio.Future[Any] | None", list[Callable[[], None]]]
_Result = tuple["asyncio.Future[Any] | None", Any, Exception | None]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


# Column of ``instances`` -> attribute of ``Instance``: rows are mapped by name, in both directions.
_INSTANCE_COLUMNS = {
    "instance_id": "instance_id",
    "name": "name",
    "execution_id": "execution_id",
    "status": "status",
    "input": "input",
    "output": "output",
    "custom_status": "custom_status",
    "created_time": "created",
    "last_updated_time": "updated",
    "parent": "parent",
    "version": "version",
    "next_task_id": "next_task_id",
    "action_count": "action_count",
}
_ACTIVITY_COLUMNS = ("id", "instance_id", "execution_id", "task_id", "name", "input")


def _insert(table: str, columns: Iterable[str]) -> str:
    names = list(columns)
    return f"INSERT OR REPLACE INTO {table}({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"


#: How long writes that nobody awaits (episode commits, activity results) gather before the writer
#: thread is woken for them. Waking it per event-loop iteration made it contend for the GIL with
#: the loop a few hundred times a second under load: in four A/B rounds of 1-image loads (4 and 16
#: concurrent tasks) the host process spent 9-20 % more CPU per task without this window, and the
#: system classified 8-40 % fewer images per second. A crash inside the window loses
#: what a crash just before the writes would have lost: recovery re-runs those episodes and
#: activities from the messages already committed, as it always did.
GROUP_COMMIT_WINDOW_S = 0.002

_UPSERT_INSTANCE = _insert("instances", _INSTANCE_COLUMNS)
_UPSERT_MESSAGE = _insert("messages", ("id", "instance_id", "execution_id", "visible_at", "body"))
_UPSERT_ACTIVITY = _insert("activities", _ACTIVITY_COLUMNS)
_UPSERT_HISTORY = _insert("history", ("instance_id", "seq", "event"))


def instance_row(inst: Instance) -> dict[str, Any]:
    """The ``instances`` row of ``inst``, by column name."""
    row = {column: getattr(inst, attr) for column, attr in _INSTANCE_COLUMNS.items()}
    row["status"] = inst.status.value
    row["parent"] = json.dumps(inst.parent) if inst.parent else None
    return row


def instance_from_row(row: Mapping[str, Any]) -> Instance:
    """An ``Instance`` from its ``instances`` row; its history is read separately (or never)."""
    values = {attr: row[column] for column, attr in _INSTANCE_COLUMNS.items()}
    values["status"] = RuntimeStatus(values["status"])
    values["parent"] = cast(ParentRef, json.loads(values["parent"])) if values["parent"] else None
    return Instance(**values, history=None)


def message_row(msg: Message) -> dict[str, Any]:
    body = json.dumps({"kind": msg.kind.value, "event": msg.event, "reason": msg.reason}, separators=(",", ":"))
    return {
        "id": msg.id,
        "instance_id": msg.instance_id,
        "execution_id": msg.execution_id,
        "visible_at": msg.visible_at,
        "body": body,
    }


def message_from_row(row: Mapping[str, Any]) -> Message:
    data = json.loads(row["body"])
    return Message(
        row["id"],
        row["instance_id"],
        row["execution_id"],
        ControlKind(data["kind"]),
        data.get("event"),
        data.get("reason"),
        row["visible_at"],
    )


def _dicts(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _history_events(conn: sqlite3.Connection, instance_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
    return [cast(dict[str, Any], json.loads(text)) for (text,) in rows]


@dataclass
class Snapshot:
    """Everything on disk at startup, used to rebuild memory after a restart or a crash."""

    instances: list[Instance]
    messages: list[Message]
    activities: list[WorkItem]
    max_message_id: int
    max_activity_id: int


class HubInUseError(RuntimeError):
    """Another process holds the task hub: two hosts on one hub would both run its work."""


def _lock_hub(path: Path) -> int:
    """Hold an exclusive lock on ``<hub>.lock`` for the life of this process (the OS drops it when it dies).

    Two hosts recovering the same hub would each run every pending activity and number new messages from the
    same maximum, overwriting each other's rows."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HubInUseError(
            f"task hub {path} is in use by another host (it holds {lock_path}); stop it, or give this one "
            "another --hub-dir or hub name"
        ) from None
    return fd


class Store:
    """Durable log of the task hub with a single group-committing writer thread."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_fd = None if str(path) == ":memory:" else _lock_hub(path)  # tests run hubs in memory
        self._conn = _connect(path)
        self._conn.executescript(SCHEMA)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pending: Operation = []
        self._after_commit: list[Callable[[], None]] = []
        self.commits = 0

    # ------------------------------------------------------------------ startup

    def load(self) -> Snapshot:
        """Read the whole hub (minus finished histories) before the writer starts."""
        c = self._conn
        return Snapshot(
            instances=[instance_from_row(r) for r in _dicts(c, "SELECT * FROM instances")],
            messages=[message_from_row(r) for r in _dicts(c, "SELECT * FROM messages ORDER BY id")],
            activities=[
                WorkItem(**{k: r[k] for k in _ACTIVITY_COLUMNS})
                for r in _dicts(c, "SELECT * FROM activities ORDER BY id")
            ],
            max_message_id=c.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0],
            max_activity_id=c.execute("SELECT COALESCE(MAX(id), 0) FROM activities").fetchone()[0],
        )

    def load_history(self, instance_id: str) -> list[dict[str, Any]]:
        """History events of one instance (startup only: no writer yet)."""
        return _history_events(self._conn, instance_id)

    def read_history(self, instance_id: str) -> asyncio.Future[list[dict[str, Any]]]:
        """History events of one instance, read after every write queued before."""
        return self.query(lambda conn: _history_events(conn, instance_id))

    def read_timer_status(self, function: str) -> asyncio.Future[dict[str, Any] | None]:
        """A timer function's schedule monitor record (``last``, ``next``, ``last_updated``: ISO 8601)."""
        sql = "SELECT last, next, last_updated FROM timer_status WHERE function=?"
        return self.query(lambda conn: next(iter(_dicts(conn, sql, (function,))), None))

    # ------------------------------------------------------------------ statements
    # Each returns the statements of one change, for the caller to queue with the rest of the
    # operation it belongs to (one ``submit`` commits them together, in order).

    @staticmethod
    def save_instance(*instances: Instance) -> Statement:
        return (_UPSERT_INSTANCE, [instance_row(i) for i in instances])

    @staticmethod
    def save_history(instance_id: str, first_seq: int, events: Sequence[dict[str, Any]]) -> Statement:
        """Write ``events`` as the history rows ``first_seq``, ``first_seq + 1``, ..."""
        rows = [
            {"instance_id": instance_id, "seq": seq, "event": json.dumps(ev, separators=(",", ":"))}
            for seq, ev in enumerate(events, first_seq)
        ]
        return (_UPSERT_HISTORY, rows)

    @staticmethod
    def delete_history(instance_id: str) -> Statement:
        return ("DELETE FROM history WHERE instance_id=?", [(instance_id,)])

    @staticmethod
    def save_message(msg: Message) -> Statement:
        return (_UPSERT_MESSAGE, [message_row(msg)])

    @staticmethod
    def delete_messages(ids: Iterable[int]) -> Statement:
        return ("DELETE FROM messages WHERE id=?", [(i,) for i in ids])

    @staticmethod
    def save_activity(item: WorkItem) -> Statement:
        return (_UPSERT_ACTIVITY, [{k: getattr(item, k) for k in _ACTIVITY_COLUMNS}])

    @staticmethod
    def delete_activity(activity_id: int) -> Statement:
        return ("DELETE FROM activities WHERE id=?", [(activity_id,)])

    @staticmethod
    def save_timer_status(function: str, last: str | None, next_occurrence: str, last_updated: str) -> Statement:
        return (
            "INSERT OR REPLACE INTO timer_status(function, last, next, last_updated) VALUES (?, ?, ?, ?)",
            [(function, last, next_occurrence, last_updated)],
        )

    @staticmethod
    def delete_instance(instance_id: str) -> Operation:
        """Everything of one instance: history, messages, activities and the instance row."""
        iid = [(instance_id,)]
        return [
            ("DELETE FROM history WHERE instance_id=?", iid),
            ("DELETE FROM messages WHERE instance_id=?", iid),
            ("DELETE FROM activities WHERE instance_id=?", iid),
            ("DELETE FROM instances WHERE instance_id=?", iid),
        ]

    # ------------------------------------------------------------------ writer

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="durable-store", daemon=True)
        self._thread.start()

    def submit(self, operation: Operation) -> asyncio.Future[None]:
        """Queue a write; the returned future resolves once it is committed."""
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        if self._pending:
            self._queue.put((self._pending, None, []))
            self._pending = []
        self._enqueue(operation, future)
        return future

    def submit_nowait(self, operation: Operation) -> None:
        """Queue a write whose durability nobody waits for (ordering still holds).

        Writes made within :data:`GROUP_COMMIT_WINDOW_S` travel to the writer as one item; a
        ``submit`` or ``query`` in between hands them over at once, ahead of itself.
        """
        if not self._pending:
            assert self._loop is not None
            self._loop.call_later(GROUP_COMMIT_WINDOW_S, self.flush)
        self._pending.extend(operation)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop once everything queued so far, and what this loop iteration
        still queues, is committed.

        For side effects that must not outrun the state that caused them: the engine hands an activity to a
        worker only once the episode that scheduled it is durable, as the Durable Task Framework sends an
        orchestration's messages only after its checkpoint. Otherwise a SIGKILL could lose the history of
        earlier steps while the activity's effects stay (a persist had deleted a task's uploads, and the
        restarted orchestration ran the preprocessing that needed them again). The flush happens at the end
        of this loop iteration, not after the group-commit window: somebody is waiting.
        """
        assert self._loop is not None
        self._after_commit.append(callback)
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand the writes gathered so far to the writer now, without waiting for the window to end."""
        if self._pending or self._after_commit:
            self._enqueue(self._pending, None)
            self._pending = []

    def _enqueue(self, work: _Work, future: asyncio.Future[Any] | None) -> None:
        """Queue ``work``, carrying the callbacks registered so far (they run after it commits)."""
        callbacks, self._after_commit = self._after_commit, []
        self._queue.put((work, future, callbacks))

    def query[T](self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run a read on the writer's connection after everything queued before it."""
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        self.flush()
        self._enqueue(fn, future)
        return future

    async def close(self) -> None:
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    def _run(self) -> None:
        conn, loop = self._conn, self._loop
        assert loop is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < 10000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                results = self._execute(conn, batch)
            except sqlite3.Error as exc:  # BEGIN or COMMIT itself failed: a full disk, an I/O error
                self._stop_on_failed_commit(conn, batch, exc)
                return
            self.commits += 1
            callbacks = [callback for _, _, item_callbacks in batch for callback in item_callbacks]
            # most writes have nobody waiting: waking the event loop for them is a system call and
            # a loop iteration per commit; a failed write is logged by _execute either way
            if callbacks or any(future is not None for future, _, _ in results):
                loop.call_soon_threadsafe(_resolve, results, callbacks)
            if stop:
                return

    def _stop_on_failed_commit(self, conn: sqlite3.Connection, batch: list[_Item], exc: sqlite3.Error) -> None:
        """Nothing more can be made durable: answer whoever waits with the error and stop the host (SIGTERM, as
        Ctrl-C does), rather than run on in memory while the hub on disk falls behind. A restart recovers from
        the last commit."""
        log.critical("task hub %s: a commit failed (%s); the host stops", self.path, exc)
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        assert self._loop is not None
        failed = [(future, None, exc) for _, future, _ in batch]
        self._loop.call_soon_threadsafe(_resolve, failed, [])
        os.kill(os.getpid(), signal.SIGTERM)

    def _execute(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Result]:
        """Commit the batch in one transaction; an item that fails is rolled back alone (a savepoint each), so
        no operation is ever half written."""
        results: list[_Result] = []
        conn.execute("BEGIN")
        for work, future, _ in batch:
            conn.execute("SAVEPOINT item")
            try:
                if callable(work):
                    value = work(conn)
                else:
                    for sql, rows in work:
                        conn.executemany(sql, rows)
                    value = None
                results.append((future, value, None))
            except Exception as exc:
                log.exception("task hub write failed")
                conn.execute("ROLLBACK TO item")
                results.append((future, None, exc))
            conn.execute("RELEASE item")
        conn.execute("COMMIT")
        return results


def _resolve(results: Iterable[_Result], callbacks: Iterable[Callable[[], None]]) -> None:
    for callback in callbacks:
        callback()
    for future, value, exc in results:
        if future is None or future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)
