"""``--workers N``: activities run in N worker processes that import the app themselves."""

from __future__ import annotations

import time

import pytest
import requests

from durable_host.testing import HostProcess

from .conftest import APPS, Api

pytestmark = pytest.mark.host


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
            for b_start, b_end in runs[i + 1 :]
        ), by_pid


def test_a_dead_worker_process_fails_its_activity_and_is_replaced(tmp_path):
    with HostProcess(APPS / "patterns", extra_args=("--workers", "2")) as host:
        api = Api(host)
        body = api.run("crash_worker", str(tmp_path / "crashed-once"), timeout=60)
        assert body["runtimeStatus"] == "Completed" and body["output"] == "survived", body
        host.wait_for_output("exited; replaced (1 activities failed)")
        assert len(api.run("pids", timeout=60)["output"]) >= 1


def test_in_process_activities_by_default(api):
    assert api.run("pids")["output"] == [api.host.process.pid]


def test_one_worker_process_runs_the_activities_apart_from_the_host():
    """``--workers 1`` is Azure's shape: one Python process runs the activities, not the host process."""
    with HostProcess(APPS / "patterns", extra_args=("--workers", "1")) as host:
        pids = Api(host).run("pids", timeout=60)["output"]
        assert len(pids) == 1 and host.process.pid not in pids, (pids, host.process.pid)
        assert "Activities run in 1 worker process\n" in host.output


def test_each_process_is_told_whether_it_runs_activities(tmp_path):
    """The dispatcher runs no activity with worker processes, and says so to the app it imports."""
    (tmp_path / "host.json").write_text('{"version": "2.0"}')
    (tmp_path / "function_app.py").write_text(
        "import os\nimport azure.durable_functions as df\n"
        "print('imported as', os.environ.get('DURABLE_HOST_ROLE', 'unset'), flush=True)\n"
        "app = df.DFApp()\n\n\n@app.activity_trigger(input_name='name')\n"
        "def hello(name: str) -> str:\n    return name\n"
    )
    with HostProcess(tmp_path, extra_args=("--workers", "2")) as host:
        deadline = time.monotonic() + 30
        while host.output.count("imported as worker") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        roles = sorted(line.split()[-1] for line in host.output.splitlines() if line.startswith("imported as"))
    assert roles == ["dispatcher", "worker", "worker"]
    with HostProcess(tmp_path) as host:  # one process runs everything (Azure sets nothing)
        assert "imported as standalone" in host.output


ORPHAN_APP = """
import json, os, time
import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="start", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return client.create_check_status_response(req, await client.start_new("linger", None, req.get_body().decode()))


@app.orchestration_trigger(context_name="context")
def linger(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("linger_activity", context.get_input()))


@app.activity_trigger(input_name="folder")
def linger_activity(folder: str) -> str:
    open(os.path.join(folder, f"started-{os.getpid()}"), "w").close()
    time.sleep(3)
    open(os.path.join(folder, "finished"), "w").close()
    return "done"
"""


def test_worker_processes_exit_at_once_when_the_host_is_killed(tmp_path):
    """SIGKILL of the host: its workers see EOF on their pipe and exit without finishing the activity."""
    app, marks = tmp_path / "app", tmp_path / "marks"
    app.mkdir(), marks.mkdir()
    (app / "host.json").write_text('{"version": "2.0"}')
    (app / "function_app.py").write_text(ORPHAN_APP)
    with HostProcess(app, extra_args=("--workers", "2")) as host:
        assert requests.post(f"{host.base_url}/api/start", data=str(marks), timeout=10).status_code == 202
        deadline = time.monotonic() + 30
        while not list(marks.glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        (started,) = marks.glob("started-*")
        worker_pid = int(started.name.split("-")[1])
        host.kill()
        deadline = time.monotonic() + 1.5
        while _alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker_pid), "the worker outlived its host"
        time.sleep(3.5)
        assert not (marks / "finished").exists(), "the worker ran the activity on after its host died"


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, not yet reaped by init, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
