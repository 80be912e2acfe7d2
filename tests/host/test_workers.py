"""``--workers N``: activities run in N worker processes that import the app themselves."""

from __future__ import annotations

from durable_host.testing import HostProcess

from .conftest import APPS, Api


def test_activities_run_in_worker_processes():
    with HostProcess(APPS / "patterns", extra_args=("--workers", "2")) as host:
        api = Api(host)
        body = api.run("pids", timeout=60)
        assert body["runtimeStatus"] == "Completed", body
        assert host.process.pid not in body["output"]
        assert len(body["output"]) == 2
        assert api.run("hello_sequence")["output"][0] == "Hello Tokyo"
        assert "Activities run in 2 worker processes" in host.output

        # each worker process runs several activities at once on its thread pool, as the Python worker does
        spans = api.run("intervals", timeout=60)["output"]
        assert host.process.pid not in {pid for pid, _, _ in spans}
        by_pid: dict[int, list[tuple[float, float]]] = {}
        for pid, start, end in spans:
            by_pid.setdefault(pid, []).append((start, end))
        assert any(
            a_start < b_end and b_start < a_end
            for runs in by_pid.values()
            for i, (a_start, a_end) in enumerate(runs)
            for b_start, b_end in runs[i + 1:]
        ), by_pid


def test_a_dead_worker_process_fails_its_activity_and_is_replaced(tmp_path):
    with HostProcess(APPS / "patterns", extra_args=("--workers", "2")) as host:
        api = Api(host)
        body = api.run("crash_worker", str(tmp_path / "crashed-once"), timeout=60)
        assert body["runtimeStatus"] == "Completed" and body["output"] == "survived", body
        assert "exited; replaced (1 activities failed)" in host.output
        assert len(api.run("pids", timeout=60)["output"]) >= 1


def test_in_process_activities_by_default(api):
    assert api.run("pids")["output"] == [api.host.process.pid]
