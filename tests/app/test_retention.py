"""Retention without a host: the sweep's rules on both blob stores, the purge's filter, the orchestration's own
cleanup on its failure paths (replayed through the SDK), the discard activity and the settings.

The status lookups here are dictionaries (of states, of the tasks sessions hold), the purge a list that records
its filter: all are the plain dependencies the timer function gives the same code
(tests/app/test_retention_host.py runs it with the SDK's durable client against the local host).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

import services
from activities.persist import discard
from contracts import DISCARD_TENSORS_ACTIVITY, INFERENCE_ACTIVITY, PERSIST_ACTIVITY
from maintenance.retention import (
    EPOCH,
    InstanceState,
    RetentionPolicy,
    by_instance,
    purge_finished,
    run_maintenance,
    state_of,
    sweep,
)
from maintenance.timer import policy_from
from settings import SettingsError, get_settings, maintenance_schedule, settings_from
from storage.blobs import AzureBlobStore, BlobInfo, BlobStore, LocalFolderBlobStore
from tests.app.replay import ReplayDriver
from tests.app.test_orchestrator import calls_to, make_request, orchestrator_handle, run

pytestmark = pytest.mark.unit

POLICY = RetentionPolicy("tensors", "uploads", timedelta(hours=24), timedelta(days=30))


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """Both stores; the Azure one in containers of its own, so tests sharing one Azurite do not meet."""
    if request.param == "local":
        yield LocalFolderBlobStore(tmp_path / "blobs")
        return
    azure = AzureBlobStore(request.getfixturevalue("azurite").connection_string)
    yield azure
    azure.close()


@pytest.fixture
def policy(store: BlobStore) -> RetentionPolicy:
    suffix = uuid.uuid4().hex[:12]
    return RetentionPolicy(f"tensors-{suffix}", f"uploads-{suffix}", POLICY.upload_retention, POLICY.instance_retention)


def lookup_in(states: dict[str, InstanceState]) -> Any:
    async def lookup(instance_id: str) -> InstanceState:
        return states.get(instance_id, InstanceState.UNKNOWN)

    return lookup


def sessions_holding(held: dict[str, frozenset[str] | None], asked: list[str] | None = None) -> Any:
    async def session_tasks(session_id: str) -> frozenset[str] | None:
        if asked is not None:
            asked.append(session_id)
        return held.get(session_id, frozenset())

    return session_tasks


no_sessions = sessions_holding({})


def names(store: BlobStore, container: str) -> set[str]:
    return {blob.name for blob in store.list_blobs(f"{container}/")}


def test_sweep_keeps_what_a_task_may_still_read_and_deletes_the_rest(store: BlobStore, policy: RetentionPolicy) -> None:
    """done: Terminated; live: Running; gone: purged (or never started). Every blob is written now; the sweep
    runs once an hour later and once a day later."""
    for instance in ("done", "live", "gone"):
        for index in range(2):
            store.put(f"{policy.tensor_container}/{instance}/{index}-r256.u8", b"t" * 100)
        store.put(f"{policy.upload_container}/{instance}/0.jpg", b"u" * 10)
    lookup = lookup_in({"done": InstanceState.FINISHED, "live": InstanceState.ACTIVE})
    written = datetime.now(UTC)

    report = asyncio.run(sweep(store, lookup, no_sessions, written + timedelta(hours=1), policy))
    assert names(store, policy.tensor_container) == {
        f"{policy.tensor_container}/{instance}/{index}-r256.u8" for instance in ("live", "gone") for index in range(2)
    }
    assert len(names(store, policy.upload_container)) == 3  # uploads outlive their task by a day
    assert (report.tensor_blobs, report.tensor_bytes, report.upload_blobs) == (2, 200, 0)

    report = asyncio.run(sweep(store, lookup, no_sessions, written + timedelta(hours=25), policy))
    assert names(store, policy.tensor_container) == {f"{policy.tensor_container}/live/{i}-r256.u8" for i in range(2)}
    assert names(store, policy.upload_container) == {f"{policy.upload_container}/live/0.jpg"}
    assert (report.tensor_blobs, report.upload_blobs, report.upload_bytes) == (2, 2, 20)
    assert report.kept_instances == 2  # live's tensors and live's uploads


def test_uploads_of_a_task_still_queued_in_its_session_are_kept(store: BlobStore, policy: RetentionPolicy) -> None:
    """A session's queued task has no instance until its turn: its uploads (``<task>/session@<name>/...``, as the
    starter names them) stay while the session lists the task, or while its status cannot say; a task the
    session no longer holds (its handover failed, or the session ended) is an orphan like any other."""
    uploads = policy.upload_container
    for task_id, folder in (
        ("queued", "session@s1/"),  # waiting in s1's queue
        ("dropped", "session@s1/"),  # s1 never took it (the starter gave up with a 503)
        ("unsure", "session@s2/"),  # s2's status cannot say which tasks it holds
        ("orphan", ""),  # no session: its starter died before start_new
        ("running", "session@s3/"),  # its turn came: the instance exists and says so
    ):
        store.put(f"{uploads}/{task_id}/{folder}0.png", b"u" * 10)
    asked: list[str] = []
    session_tasks = sessions_holding({"session@s1": frozenset({"queued", "other"}), "session@s2": None}, asked)
    lookup = lookup_in({"running": InstanceState.ACTIVE})

    report = asyncio.run(sweep(store, lookup, session_tasks, datetime.now(UTC) + timedelta(hours=25), policy))
    assert names(store, uploads) == {
        f"{uploads}/queued/session@s1/0.png",
        f"{uploads}/unsure/session@s2/0.png",
        f"{uploads}/running/session@s3/0.png",
    }
    assert report.upload_blobs == 2
    assert sorted(asked) == ["session@s1", "session@s2"]  # once per session, and only for tasks without an instance


def test_the_newest_upload_of_an_instance_decides(tmp_path: Path) -> None:
    """A task's uploads go together, once the last one written is old enough."""
    store = LocalFolderBlobStore(tmp_path)
    store.put("uploads/task/0.jpg", b"old")
    store.put("uploads/task/1.jpg", b"new")
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    os.utime(tmp_path / "uploads" / "task" / "0.jpg", (two_days_ago, two_days_ago))
    lookup = lookup_in({"task": InstanceState.FINISHED})
    asyncio.run(sweep(store, lookup, no_sessions, datetime.now(UTC), POLICY))
    assert names(store, "uploads") == {"uploads/task/0.jpg", "uploads/task/1.jpg"}
    asyncio.run(sweep(store, lookup, no_sessions, datetime.now(UTC) + timedelta(hours=24, seconds=5), POLICY))
    assert names(store, "uploads") == set()


def test_an_empty_or_missing_container_is_nothing_to_do(store: BlobStore, policy: RetentionPolicy) -> None:
    report = asyncio.run(sweep(store, lookup_in({}), no_sessions, datetime.now(UTC), policy))
    assert (report.tensor_blobs, report.upload_blobs, report.kept_instances) == (0, 0, 0)


def test_blobs_are_grouped_by_instance_id() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    blobs = [BlobInfo(name, 1, at) for name in ("tensors/a/0.u8", "tensors/a/deep/1.u8", "tensors/b/0.u8", "tensors/x")]
    groups = {group.instance_id: [blob.name for blob in group.blobs] for group in by_instance(blobs)}
    assert groups == {"a": ["tensors/a/0.u8", "tensors/a/deep/1.u8"], "b": ["tensors/b/0.u8"], "x": ["tensors/x"]}


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (None, InstanceState.UNKNOWN),
        (df.OrchestrationRuntimeStatus.Completed, InstanceState.FINISHED),
        (df.OrchestrationRuntimeStatus.Failed, InstanceState.FINISHED),
        (df.OrchestrationRuntimeStatus.Terminated, InstanceState.FINISHED),
        (df.OrchestrationRuntimeStatus.Canceled, InstanceState.FINISHED),
        (df.OrchestrationRuntimeStatus.Running, InstanceState.ACTIVE),
        (df.OrchestrationRuntimeStatus.Pending, InstanceState.ACTIVE),
        (df.OrchestrationRuntimeStatus.Suspended, InstanceState.ACTIVE),
        (df.OrchestrationRuntimeStatus.ContinuedAsNew, InstanceState.ACTIVE),
    ],
)
def test_every_runtime_status_has_a_state(status: df.OrchestrationRuntimeStatus | None, state: InstanceState) -> None:
    assert state_of(status) is state


def test_purge_asks_for_finished_instances_created_before_the_retention_window() -> None:
    asked: list[tuple[datetime, datetime, list[df.OrchestrationRuntimeStatus]]] = []

    async def purge(created_from: datetime, created_to: datetime, statuses: list[df.OrchestrationRuntimeStatus]) -> int:
        asked.append((created_from, created_to, statuses))
        return 3

    now = datetime(2026, 3, 31, 12, tzinfo=UTC)
    assert asyncio.run(purge_finished(purge, now, POLICY)) == 3
    assert asked == [
        (
            EPOCH,
            datetime(2026, 3, 1, 12, tzinfo=UTC),
            [
                df.OrchestrationRuntimeStatus.Completed,
                df.OrchestrationRuntimeStatus.Failed,
                df.OrchestrationRuntimeStatus.Terminated,
            ],
        )
    ]


def test_maintenance_sweeps_before_it_purges(tmp_path: Path) -> None:
    """Sweeping first sees the statuses of instances about to be purged (after a purge they are unknown)."""
    store = LocalFolderBlobStore(tmp_path)
    store.put("tensors/old-task/0.u8", b"x")
    states = {"old-task": InstanceState.FINISHED}

    async def purge(created_from: datetime, created_to: datetime, statuses: list[df.OrchestrationRuntimeStatus]) -> int:
        states.clear()
        return 1

    report = asyncio.run(run_maintenance(store, lookup_in(states), no_sessions, purge, datetime.now(UTC), POLICY))
    assert (report.sweep.tensor_blobs, report.instances_purged) == (1, 1)
    assert "deleted 1 tensor blob(s)" in report.summary() and "purged 1 finished instance(s)" in report.summary()


# ---------------------------------------------------------------- the orchestration cleans up after itself


def test_an_orchestration_that_fails_discards_its_tensors_then_fails() -> None:
    """An inference result the orchestrator cannot read makes it raise after preprocessing stored tensors."""
    result = run(make_request(images=2, models=["resnet18"]), **{INFERENCE_ACTIVITY: lambda payload: {}})
    assert result.error and "model" in result.error  # InferenceOutput.from_json({}) lacks it
    assert calls_to(result, DISCARD_TENSORS_ACTIVITY) == ["task-1"]
    assert result.calls[-1][0] == DISCARD_TENSORS_ACTIVITY and calls_to(result, PERSIST_ACTIVITY) == []


def test_a_failing_discard_does_not_hide_why_the_orchestration_failed() -> None:
    def discard_down(payload: str) -> int:
        raise ConnectionError("blob service unreachable")

    result = run(
        make_request(images=1, models=["resnet18"]),
        **{INFERENCE_ACTIVITY: lambda payload: {}, DISCARD_TENSORS_ACTIVITY: discard_down},
    )
    assert result.error and "model" in result.error and "unreachable" not in result.error


def test_bad_input_fails_after_the_same_cleanup() -> None:
    result = ReplayDriver(orchestrator_handle(), {DISCARD_TENSORS_ACTIVITY: lambda payload: 0}).run("bad-input", [1])
    assert result.error and "ClassificationRequest" in result.error
    assert result.calls == [(DISCARD_TENSORS_ACTIVITY, "bad-input")]


def test_a_task_that_cannot_be_persisted_discards_its_tensors_and_completes() -> None:
    def persist_down(payload: dict[str, Any]) -> int:
        raise ConnectionError("database unreachable")

    result = run(make_request(images=1, models=["resnet18"], attempts=2), **{PERSIST_ACTIVITY: persist_down})
    assert "database unreachable" in result.output["persist_error"]
    assert calls_to(result, DISCARD_TENSORS_ACTIVITY) == ["task-1"]


def test_a_persisted_task_needs_no_discard() -> None:
    result = run(make_request(images=2, models=["resnet18"]))
    assert result.output["database_task_id"] == 42
    assert calls_to(result, DISCARD_TENSORS_ACTIVITY) == []


@pytest.fixture
def blob_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The app's settings and blob store pointed at a temporary folder (per-process caches reset around it)."""
    monkeypatch.setenv("BLOB_LOCAL_ROOT", str(tmp_path))
    for cache in (get_settings, services.blob_store):
        cache.cache_clear()
    yield tmp_path
    for cache in (get_settings, services.blob_store):
        cache.cache_clear()


def test_discard_deletes_that_instance_tensors_only(blob_folder: Path) -> None:
    store = services.blob_store()
    for name in ("tensors/task-1/0-r256.u8", "tensors/task-1/1-r232.u8", "tensors/task-10/0-r256.u8"):
        store.put(name, b"x")
    store.put("uploads/task-1/0.jpg", b"kept for UPLOAD_RETENTION_HOURS")
    assert discard("task-1") == 2
    assert {blob.name for blob in store.list_blobs("tensors/")} == {"tensors/task-10/0-r256.u8"}
    assert store.exists("uploads/task-1/0.jpg")
    assert discard("task-1") == 0  # re-runnable


# ---------------------------------------------------------------- settings


def test_retention_settings_and_their_defaults() -> None:
    defaults = policy_from(settings_from({}))
    assert (defaults.upload_retention, defaults.instance_retention) == (timedelta(hours=24), timedelta(days=30))
    assert (defaults.tensor_container, defaults.upload_container) == ("tensors", "uploads")
    chosen = policy_from(settings_from({"UPLOAD_RETENTION_HOURS": "0.5", "INSTANCE_RETENTION_DAYS": "7"}))
    assert (chosen.upload_retention, chosen.instance_retention) == (timedelta(minutes=30), timedelta(days=7))
    for name in ("UPLOAD_RETENTION_HOURS", "INSTANCE_RETENTION_DAYS"):
        with pytest.raises(SettingsError, match=name):
            settings_from({name: "-1"})
    assert maintenance_schedule({}) == "0 0 * * * *"
    assert maintenance_schedule({"MAINTENANCE_SCHEDULE": " */5 * * * * * "}) == "*/5 * * * * *"
