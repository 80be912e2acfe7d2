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


def test_in_process_activities_by_default(api):
    assert api.run("pids")["output"] == [api.host.process.pid]
