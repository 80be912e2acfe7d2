"""Azure is the judge: Microsoft's worker library and the host must see every app the same way.

Each app is indexed twice, in separate processes: once through ``azure_functions_runtime`` alone
(``loader.index_function_app`` then ``Registry.add_indexed_function``, as Azure's worker loads an
app), once through ``durable_host``. The worker's view is built here, from the library, not from
the host's code, so a host that drifts from Azure fails these tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from durable_host.testing import HostProcess, HostStartError, wait_for

from .conftest import APPS

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[2]

WORKER_VIEW = r"""
import json, sys, types
from azure_functions_runtime import functions, loader
from azure_functions_runtime.bindings.meta import load_binding_registry

protos = types.SimpleNamespace(BindingInfo=types.SimpleNamespace(
    **{"in": 0, "out": 1, "inout": 2, "undefined": 0}))
sys.path.insert(0, ".")
load_binding_registry()
registry = functions.Registry()
try:
    indexed = loader.index_function_app("function_app.py")
    view = []
    for function in indexed:
        info = registry.add_indexed_function(function=function, protos=protos)
        trigger = function.get_trigger()
        raw = next(b for b in map(json.loads, function.get_raw_bindings()) if b["type"] == trigger.type)
        view.append({"name": info.name, "trigger": trigger.type,
                     "params": sorted(info.input_types) + (["context"] if info.requires_context else []),
                     "route": raw.get("route") or (info.name if trigger.type == "httpTrigger" else None),
                     "methods": sorted(m.upper() for m in raw.get("methods") or []),
                     "auth_level": (raw.get("authLevel") or "").lower() or None})
    print(json.dumps({"functions": sorted(view, key=lambda f: f["name"])}))
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
"""

HOST_VIEW = r"""
import json
from pathlib import Path
from durable_host.azure_worker import IndexingError
from durable_host.indexing import index_functions, load_app

try:
    index = index_functions(load_app(Path(".")))
except IndexingError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)

def params(f):
    return sorted(p for p in (f.trigger_param, f.client_param) if p) + (["context"] if f.wants_context else [])

view = [{"name": f.name, "trigger": "httpTrigger", "params": params(f), "route": f.route,
         "methods": sorted(f.methods), "auth_level": f.auth_level} for f in index.http]
for trigger, functions in (("orchestrationTrigger", index.orchestrators),
                           ("activityTrigger", index.activities), ("entityTrigger", index.entities)):
    view += [{"name": f.name, "trigger": trigger, "params": params(f), "route": None, "methods": [],
              "auth_level": None} for f in functions.values()]
for trigger, listed in (("queueTrigger", index.queues), ("timerTrigger", index.timers)):
    view += [{"name": f.name, "trigger": trigger, "params": params(f), "route": None, "methods": [],
              "auth_level": None} for f in listed]
print(json.dumps({"functions": sorted(view, key=lambda f: f["name"])}))
"""


def view(script: str, app_dir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


GOOD_APPS = [
    ROOT,
    APPS / "patterns",
    APPS / "bench",
    APPS / "recovery",
    APPS / "entities",
    APPS / "converters",
    APPS / "triggers",
    APPS / "versioned",
    APPS / "redeployed",
]


@pytest.mark.parametrize("app_dir", GOOD_APPS, ids=lambda p: p.name)
def test_worker_and_host_index_every_function_alike(app_dir: Path) -> None:
    worker = view(WORKER_VIEW, app_dir)
    assert "error" not in worker, worker["error"]
    assert worker["functions"], "the worker indexed no function"
    assert view(HOST_VIEW, app_dir) == worker


def test_the_classifier_app_loads_all_its_functions_in_the_worker() -> None:
    names = {f["name"] for f in view(WORKER_VIEW, ROOT)["functions"]}
    assert names == {
        "submit_task",
        "create_task",
        "get_task_result",
        "classify_images",
        "preprocess_images",
        "classify_batch",
        "persist_results",
        "discard_tensors",
        "maintenance",
        "start_from_queue",
        "classify_session",
        "deliver_result",
    }


BAD_APPS = {
    "bad_annotation": "cannot load the summarise function: binding payload has invalid non-type "
    "annotation dict[str, typing.Any]",
    "two_apps": "More than one DFApp or other top level function app instances are defined.",
    "no_app": "Could not find top level function app instances in function_app.py.",
}


@pytest.mark.parametrize("app", sorted(BAD_APPS))
def test_a_bad_app_fails_in_the_worker_and_the_host_with_the_same_message(app: str) -> None:
    worker_error = view(WORKER_VIEW, APPS / app).get("error")
    assert worker_error == BAD_APPS[app]
    assert view(HOST_VIEW, APPS / app) == {"error": worker_error}
    with pytest.raises(HostStartError) as refused, HostProcess(APPS / app, startup_timeout=30):
        pass
    assert f"durable_host: cannot start: {worker_error}" in str(refused.value)


@pytest.fixture(scope="module")
def converters_host():
    with HostProcess(APPS / "converters") as host:
        yield host


def test_http_return_values_go_through_the_workers_converter(converters_host: HostProcess) -> None:
    base = f"{converters_host.base_url}/api"
    text = requests.get(f"{base}/text", params={"name": "azure"}, timeout=10)
    assert (text.status_code, text.text) == (200, "hello azure")
    assert text.headers["Content-Type"].startswith("text/plain")
    cookies = requests.get(f"{base}/cookies", timeout=10)
    assert cookies.status_code == 201
    assert cookies.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    payload = bytes(range(256))
    echoed = requests.post(f"{base}/echo", data=payload, timeout=10)
    assert echoed.content == payload
    assert echoed.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("route", ["dict", "nothing"])
def test_http_return_values_the_worker_cannot_send_are_a_500(converters_host: HostProcess, route: str) -> None:
    answer = requests.get(f"{converters_host.base_url}/api/{route}", timeout=10)
    assert answer.status_code == 500
    # the host's log line reaches this process through a pipe, possibly after the answer did
    refusal = 'unable to encode outgoing TypedData: unsupported type "http"'
    wait_for(lambda: refusal in converters_host.output, "the worker's refusal in the log", converters_host, 15)


def test_an_activity_result_the_worker_cannot_encode_fails_the_activity(converters_host: HostProcess) -> None:
    started = requests.get(f"{converters_host.base_url}/api/start/unserialisable", timeout=10)
    status_url = started.json()["statusQueryGetUri"]
    for _ in range(200):
        status = requests.get(status_url, timeout=10).json()
        if status["runtimeStatus"] not in ("Pending", "Running"):
            break
        time.sleep(0.05)
    assert status["runtimeStatus"] == "Failed"
    assert "activity trigger output must be json serializable" in status["output"]
