"""Startup: configuration, indexing errors, route compilation."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from durable_host.config import build_config, load_local_settings
from durable_host.http_triggers import compile_route
from durable_host.indexing import HttpFunction
from durable_host.testing import HostProcess, HostStartError
from durable_host.urls import client_binding
from tests.conftest import REPO_ROOT

from .conftest import APPS

pytestmark = pytest.mark.host


def test_entities_are_refused_with_the_function_name():
    with (
        pytest.raises(HostStartError, match=r"entity functions are not supported.*Counter"),
        HostProcess(APPS / "entities", startup_timeout=30),
    ):
        pass


def test_a_second_host_on_the_same_task_hub_is_refused(tmp_path):
    """Both would recover the hub and run its pending work twice; the first keeps running."""
    with HostProcess(APPS / "patterns", hub_dir=tmp_path / "hub", startup_timeout=60) as first:
        with (
            pytest.raises(HostStartError, match=r"task hub .* is in use by another host"),
            HostProcess(APPS / "patterns", hub_dir=tmp_path / "hub", startup_timeout=60),
        ):
            pass
        assert requests.get(f"{first.base_url}/admin/host/status", timeout=10).json()["state"] == "Running"
    with HostProcess(APPS / "patterns", hub_dir=tmp_path / "hub", startup_timeout=60):
        pass  # once the first has stopped, the hub is free


def test_host_json_and_local_settings(tmp_path):
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "durableTask": {
                        "hubName": "%HUB%",
                        "maxConcurrentActivityFunctions": 3,
                        "maxConcurrentOrchestratorFunctions": "4",
                    },
                },
            }
        )
    )
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"HUB": "FromSettings", "KEEP": "settings"}}))
    environ = {"KEEP": "environment"}
    load_local_settings(tmp_path, environ)
    assert environ == {"KEEP": "environment", "HUB": "FromSettings"}
    config = build_config(tmp_path, host="0.0.0.0", port=8080, hub_dir=None, workers=None, environ=environ)
    assert (config.hub_name, config.route_prefix) == ("FromSettings", "")
    assert (config.max_activities, config.max_orchestrations) == (3, 4)
    assert config.hub_path == tmp_path / ".durable" / "FromSettings.sqlite"
    assert config.base_url == "http://localhost:8080"


def test_an_ipv6_address_goes_in_brackets_in_the_urls_handed_out(tmp_path):
    (tmp_path / "host.json").write_text("{}")
    config = build_config(tmp_path, host="::1", port=8080, hub_dir=None, workers=None, environ={})
    assert config.base_url == "http://[::1]:8080"
    binding = client_binding(config)
    assert binding["rpcBaseUrl"] == "http://[::1]:8080/durabletask/"
    assert binding["baseUrl"].startswith("http://[::1]:8080/runtime/webhooks/durabletask")


def _route(template: str, methods=()):
    return compile_route(
        HttpFunction(
            name="f",
            fn=print,
            trigger_param="req",
            is_async=False,
            wants_context=False,
            client_param=None,
            route=template,
            methods=methods,
        ),
        "api",
    )


@pytest.mark.parametrize(
    "template,path,expected",
    [
        ("users/{id:int}", "api/users/12", {"id": "12"}),
        ("users/{id:int}", "api/users/x", None),
        ("users/{id:int:min(10)}", "api/users/9", None),
        ("files/{*path}", "api/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{*path}", "api/files", {}),
        ("a/{name?}", "api/a", {}),
        ("a/{name=def}", "api/a", {"name": "def"}),
        ("v/{id:guid}", "api/v/1b4e28ba-2fa1-11d2-883f-0016d3cca427", {"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}),
        ("v/{code:regex(^[a-z]+$)}", "api/v/ab", {"code": "ab"}),
        ("v/{code:regex(^[a-z]+$)}", "api/v/a1", None),
        ("v/{n:length(3)}", "api/v/abcd", None),
        ("Case/Literal", "api/case/literal", {}),
    ],
)
def test_route_templates(template, path, expected):
    assert _route(template).match(path) == expected


def test_a_durable_task_scheduler_host_json_runs_locally(tmp_path):
    """The host.json deployed with the Durable Task Scheduler backend also serves the laptop."""
    shutil.copy(APPS / "bench" / "function_app.py", tmp_path)
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "durableTask": {
                        "hubName": "SchedulerHub",
                        "storageProvider": {
                            "type": "azureManaged",
                            "connectionStringName": "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
                        },
                    }
                },
            }
        )
    )
    with HostProcess(tmp_path) as host:
        started = requests.post(
            f"{host.base_url}/runtime/webhooks/durabletask/orchestrators/HelloSequence5?timeout=20&pollingInterval=1",
            timeout=30,
        )
        assert started.status_code == 200, started.text
        assert started.json() == ["Tokyo", "Seattle", "London", "Paris", "Cairo"]
        notes = [line for line in host.output.splitlines() if "storageProvider" in line]
    assert notes == [
        "host.json storageProvider 'azureManaged' applies on Azure only; this host keeps the task hub above"
    ]


@pytest.mark.parametrize(
    "app,code,expected",
    [
        ("bench", 0, "HelloSequence5: orchestrationTrigger"),
        ("bad_annotation", 2, "cannot load the summarise function: binding payload has invalid non-type"),
    ],
)
def test_check_loads_the_app_like_azure_and_exits(app, code, expected):
    done = subprocess.run(
        [sys.executable, "-m", "durable_host", "--check", "--app-dir", str(APPS / app)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code
    assert expected in done.stdout + done.stderr


@pytest.mark.parametrize("app", ["bad_annotation", "no_app"])
def test_an_app_that_cannot_load_is_refused_once_also_with_worker_processes(app, tmp_path):
    """The workers start before the host imports the app and fail with it: the host's message says why, and
    none of them adds a traceback of its own; none is left running."""
    _assert_refused_once(APPS / app, tmp_path)


@pytest.mark.parametrize(
    "app,where,error",
    [
        (
            "missing_module",
            ['function_app.py", line 4, in <module>', "import package_nobody_installed"],
            "No module named 'package_nobody_installed'. Cannot find module. Please check the requirements.txt",
        ),
        (
            "raises_at_import",
            [
                'function_app.py", line 6, in <module>',
                "settings = load_settings()",
                'app_settings.py", line 10, in load_settings',
                "RuntimeError: RESULTS_TABLE is not set",
            ],
            "raised from KeyError: 'RESULTS_TABLE_FOR_THIS_TEST'",
        ),
    ],
)
def test_an_app_that_raises_while_imported_is_refused_with_its_own_frames_only(app, where, error, tmp_path):
    """As the worker on Azure refuses it, with what a developer needs: the app's lines, the error as Python
    shows it (the worker's advice on requirements.txt included) and what it was raised from, without the
    host's and the worker's frames or the worker's own logged traceback of the same error."""
    output = _assert_refused_once(APPS / app, tmp_path)
    refusal = output[output.index("durable_host: cannot start:") :]
    assert "while it was imported" in refusal.splitlines()[0], output
    for line in where:
        assert line in refusal, output
    assert error in refusal, output
    assert "durable_host/" not in output and "azure_functions_runtime" not in output, output


def test_an_app_with_a_syntax_error_is_refused_with_its_line_and_caret(tmp_path):
    """No frame of the app's shows a syntax error (it is raised while compiling): Python's own lines do."""
    app = tmp_path / "app"
    shutil.copytree(APPS / "no_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "function_app.py").write_text("import azure.functions as func\n\napp = func.FunctionApp(\n")
    output = _assert_refused_once(app, tmp_path)
    refusal = output[output.index("durable_host: cannot start:") :]
    assert "function_app.py raised SyntaxError while it was imported" in refusal, output
    assert 'function_app.py", line 3' in refusal and "app = func.FunctionApp(" in refusal, output
    assert "SyntaxError: '(' was never closed" in refusal, output


def test_workers_that_fail_before_the_host_leave_the_word_to_it(tmp_path):
    """Here each worker fails at once and the host a second later: the workers wait for its word and then
    exit without a traceback (a failure of a worker alone is still reported by the worker)."""
    app = tmp_path / "app"
    shutil.copytree(APPS / "bad_annotation", app, ignore=shutil.ignore_patterns("__pycache__"))
    refused = (app / "function_app.py").read_text()
    slow_here = "import os, time\nif os.environ.get('DURABLE_HOST_ROLE') == 'dispatcher':\n    time.sleep(1.0)\n"
    (app / "function_app.py").write_text(slow_here + refused.split('"""', 2)[2])
    _assert_refused_once(app, tmp_path)


def _assert_refused_once(app: Path, cwd: Path) -> str:
    """Refused with one ``cannot start`` message, no traceback, no worker left running; the output."""
    done = subprocess.run(
        [sys.executable, "-m", "durable_host", "--app-dir", str(app), "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=cwd,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert output.count("durable_host: cannot start:") == 1, output
    assert "Traceback" not in output, output
    assert not _processes_in(cwd), "worker processes outlived the host"
    return output


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is ``folder``: the host's workers inherit its own."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if entry.name.isdigit() and (entry / "cwd").resolve() == folder.resolve():
                found.append(int(entry.name))
    return found


def test_settle_gc_freezes_what_exists_and_collects_young_objects_less_often():
    import gc

    from durable_host.__main__ import GC_YOUNG_THRESHOLD, settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > 10_000  # at least the test run's own modules
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1] * 2, before[2] * 2)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
