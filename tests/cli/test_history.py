"""``classify history`` (the terminal timeline) and ``classify monitor`` (the page's URL)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
from rich.console import Console

from classifier_cli.history import monitor_url, parse_time, timeline, timeline_table
from durable_host.testing import HostProcess
from tests.cli.conftest import Classify

pytestmark = pytest.mark.unit  # the real-task test is host (its app_host fixture says so)

T0 = "2026-01-01T00:00:00"


def at(ms: float) -> str:
    """A history timestamp ``ms`` after T0, with .NET's seven fractional digits."""
    seconds, rest = divmod(ms / 1000, 1)
    return f"{T0[:-2]}{int(seconds):02d}.{round(rest * 10_000_000):07d}Z"


HISTORY: list[dict[str, Any]] = [
    {"EventType": "ExecutionStarted", "Timestamp": at(0), "FunctionName": "orch"},
    {
        "EventType": "TaskFailed",
        "Timestamp": at(30),
        "FunctionName": "flaky",
        "ScheduledTime": at(10),
        "Input": '{"a": 1}',
        "Reason": "Activity function 'flaky' failed: ValueError: no\nstack",
    },
    {"EventType": "TimerCreated", "Timestamp": at(31), "FireAt": at(131)},
    {"EventType": "TimerFired", "Timestamp": at(131), "FireAt": at(131)},
    {
        "EventType": "TaskCompleted",
        "Timestamp": at(150),
        "FunctionName": "flaky",
        "ScheduledTime": at(132),
        "Input": '{"a":1}',
    },
    {
        "EventType": "SubOrchestrationInstanceCompleted",
        "Timestamp": at(400),
        "FunctionName": "child",
        "ScheduledTime": at(150),
    },
    {"EventType": "TaskScheduled", "Timestamp": at(401), "Name": "slow", "Input": "null"},
    {"EventType": "TimerCreated", "Timestamp": at(402), "FireAt": at(9000)},
]


def test_the_timeline_has_one_row_per_attempt_timer_and_sub_orchestration() -> None:
    start, end, steps = timeline(HISTORY)
    assert start == parse_time(at(0)) and end is None
    rows = [(s.kind, s.name, s.outcome, s.attempt, s.attempts) for s in steps]
    assert rows == [
        ("activity", "flaky", "failed", 1, 2),
        ("timer", "retry delay (flaky)", "fired", 1, 1),
        ("activity", "flaky", "completed", 2, 2),
        ("sub-orchestration", "child", "completed", 1, 1),
        ("activity", "slow", "running", 1, 1),
        ("timer", "timer", "waiting", 1, 1),
    ]
    durations = [None if s.duration is None else round(s.duration * 1000, 3) for s in steps]
    assert durations == [20.0, 100.0, 18.0, 250.0, None, None]
    assert steps[0].reason is not None and steps[0].reason.startswith("Activity function 'flaky' failed")


def test_the_table_shows_start_duration_outcome_and_retries() -> None:
    start, _, steps = timeline(HISTORY)
    console = Console(width=200, record=True)
    console.print(timeline_table({"name": "orch"}, steps, start))
    text = console.export_text()
    assert re.search(
        r"│ 1 │ flaky\s+│ activity\s+│\s+\+10 ms │\s+20 ms │ "
        r"failed: Activity function 'flaky' failed: ValueError: no\s+│ attempt 1 of 2",
        text,
    ), text
    assert re.search(r"│ 3 │ flaky\s+│ activity\s+│\s+\+132 ms │\s+18 ms │ completed\s+│ attempt 2 of 2", text), text
    assert re.search(r"│ 4 │ child\s+│ sub-orchestration │\s+\+150 ms │\s+250 ms │ completed", text), text
    assert re.search(r"│ 5 │ slow .* running .* running", text), text
    assert "stack" not in text  # the first line of a failure only


def test_monitor_url_and_an_instance_link() -> None:
    assert monitor_url("http://h:1/") == "http://h:1/runtime/webhooks/durabletask/monitor/"
    assert monitor_url("http://h:1", "a b") == "http://h:1/runtime/webhooks/durabletask/monitor/#/instances/a%20b"
    # an app on Azure serves no page: a local host's, pointed at the app with its system key
    assert monitor_url("https://app.azurewebsites.net/", "x", "k/+") == (
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/monitor/"
        "?base=https%3A%2F%2Fapp.azurewebsites.net&code=k%2F%2B#/instances/x"
    )


def test_history_and_monitor_on_a_real_task(classify: Classify, app_host: HostProcess, shared_images_dir: Path) -> None:
    photo = sorted(shared_images_dir.glob("*.jpg"))[:2]
    submitted = classify("submit", *map(str, photo), "--json")
    assert submitted.exit_code == 0, submitted.stderr
    instance_id = re.search(r'"instanceId": "([0-9a-f]{32})"', submitted.stdout)
    assert instance_id is not None, submitted.stdout
    task = instance_id.group(1)

    run = classify("history", task)
    assert run.exit_code == 0, run.stderr
    names = re.findall(r"│\s+\d+ │ (\w+)\s+│ activity", run.stdout)
    assert names.count("preprocess_images") == 1 and "classify_batch" in names and names[-1] == "persist_results"
    assert re.search(rf"classify_images {task}: Completed · [\d.]+ (ms|s) · \d+ call\(s\), 0 failed", run.stderr)

    as_json = classify("history", task, "--json")
    assert '"outcome": "completed"' in as_json.stdout and '"kind": "activity"' in as_json.stdout

    run = classify("monitor", "--no-open", task)
    assert (
        run.exit_code == 0
        and run.stdout.strip() == f"{app_host.base_url}/runtime/webhooks/durabletask/monitor/#/instances/{task}"
    )
    page = requests.get(run.stdout.strip().split("#")[0], timeout=10)
    assert page.status_code == 200 and "Durable Functions monitor" in page.text

    missing = classify("history", "no-such-task")
    assert missing.exit_code == 2 and "no task with id 'no-such-task'" in missing.stderr
