"""Timer triggers: NCRONTAB and TimeSpan schedules, %Setting% schedules, runOnStartup, the schedule monitor."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from durable_host.indexing import TimerFunction
from durable_host.schedules import CronSchedule, IntervalSchedule, fires_at_most_once_a_minute, parse_schedule
from durable_host.testing import HostProcess
from durable_host.timer_triggers import ScheduleStatus, check_past_due, resolve_timer

from .conftest import APPS
from .test_queue_triggers import wait_for

pytestmark = pytest.mark.unit  # the in-process tests; the host tests are marked host below

NOW = datetime(2026, 11, 23, 17, 0, 0, 250000, tzinfo=UTC)


class Journal:
    def __init__(self, path: Path):
        self.path = path
        path.touch()

    def entries(self, function: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [e for e in lines if e["function"] == function]


@pytest.fixture()
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def timer_host(journal: Journal, hub: Path, **schedules: str) -> HostProcess:
    return HostProcess(APPS / "triggers", env={"TRIGGER_JOURNAL": str(journal.path), **schedules}, hub_dir=hub)


@pytest.mark.host
def test_seconds_schedule_from_a_setting_fires_and_its_durable_client_works(journal: Journal, tmp_path: Path) -> None:
    every_second = "*/1 * * * * *"
    with timer_host(journal, tmp_path / "hub", TICK_SCHEDULE=every_second, MONITORED_SCHEDULE=every_second) as host:
        assert "tick: timerTrigger (schedule '*/1 * * * * *', next " in host.output
        ticks = wait_for(lambda: len(journal.entries("tick")) >= 4 and journal.entries("tick"), "four ticks", host)
        monitored = wait_for(
            lambda: len(journal.entries("monitored_tick")) >= 6 and journal.entries("monitored_tick"), "six runs", host
        )
        url = f"{host.base_url}/runtime/webhooks/durabletask/instances/{ticks[0]['instance_id']}"
        status = wait_for(
            lambda: (body := requests.get(url, timeout=5).json())["runtimeStatus"] == "Completed" and body,
            "the orchestration a tick started",
            host,
        )
    assert status["output"] == "hello tick"
    assert not any(t["past_due"] for t in ticks)
    assert_one_run_per_occurrence(monitored)  # tick's loop, told which occurrence each run was for
    assert journal.entries("startup_tick") == []  # its schedule setting is unset: in error, never run
    assert "'startup_tick' is in error and will not run" in host.output


def assert_one_run_per_occurrence(runs: list[dict[str, Any]]) -> None:
    """Each run fired once, at or after its own occurrence, and the next one waited for a later second.

    The schedule status a monitored run gets has ``Last``, the occurrence the run before it was for.
    Runs are one at a time: a slow run (a loaded machine) makes the schedule skip the occurrences
    that passed meanwhile, as on Azure, so consecutive occurrences are a whole number of seconds,
    at least one, apart; a double fire repeats an occurrence, a burst fires one before its time.
    """
    occurrences = [datetime.fromisoformat(run["status"]["Last"]).timestamp() for run in runs[1:]]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(occurrences)]
    assert all(gap >= 1 and gap == int(gap) for gap in gaps), gaps
    for run, occurrence in zip(runs, occurrences, strict=False):
        assert run["at"] >= occurrence, (run["at"], occurrence)  # not before its second
    for run, next_occurrence in zip(runs, occurrences[1:], strict=False):
        assert next_occurrence > run["at"], (run["at"], next_occurrence)  # the next waited for a later second


@pytest.mark.host
def test_run_on_startup_fires_at_once(journal: Journal, tmp_path: Path) -> None:
    with timer_host(journal, tmp_path / "hub", STARTUP_SCHEDULE="0 0 0 1 1 *") as host:  # yearly
        entries = wait_for(lambda: journal.entries("startup_tick"), "the startup run", host, timeout=10)
    assert [e["past_due"] for e in entries] == [False]


@pytest.mark.host
def test_missed_occurrence_fires_once_past_due_after_a_restart(journal: Journal, tmp_path: Path) -> None:
    host = timer_host(journal, tmp_path / "hub", MONITORED_SCHEDULE="*/1 * * * * *")
    with host:
        wait_for(lambda: journal.entries("monitored_tick"), "a scheduled run", host)
        host.stop()
        before = journal.entries("monitored_tick")
        # the next occurrence the monitor recorded (a second after the last run) passes while the host is down
        wait_for(lambda: time.time() > before[-1]["at"] + 1.5, "the next occurrence to pass")
        restarted = time.time()
        host.start()
        after = wait_for(
            lambda: [e for e in journal.entries("monitored_tick") if e["at"] > restarted], "a run after restart", host
        )
    assert not any(e["past_due"] for e in before)
    assert after[0]["past_due"] is True
    last = datetime.fromisoformat(after[0]["status"]["Last"])
    assert abs(last.timestamp() - before[-1]["at"]) < 1  # the schedule status the monitor kept across the restart
    assert not any(e["past_due"] for e in after[1:])  # one past-due run, then the schedule as usual


@pytest.mark.host
def test_bad_schedule_is_a_function_error_and_the_host_still_runs(journal: Journal, tmp_path: Path) -> None:
    with timer_host(journal, tmp_path / "hub", TICK_SCHEDULE="every minute") as host:
        assert (
            "tick: timerTrigger (error: The schedule expression 'every minute' was not recognized "
            "as a valid cron expression or timespan string.)" in host.output
        )


# In-process: schedules and the schedule monitor's rule.


def test_ncrontab_six_fields_with_seconds() -> None:
    assert parse_schedule("*/15 * * * * *").next_after(NOW) == NOW.replace(second=15, microsecond=0)
    assert parse_schedule("0 */5 * * * *").next_after(NOW) == NOW.replace(minute=5, second=0, microsecond=0)
    assert parse_schedule("0 30 9 * * Mon-Fri").next_after(NOW) == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert parse_schedule("*/10 * * * *").next_after(NOW) == NOW.replace(minute=10, second=0, microsecond=0)


def test_day_and_day_of_week_must_both_match_as_in_ncrontab() -> None:
    friday_13th = parse_schedule("0 0 0 13 * 5").next_after(NOW)
    assert (friday_13th.day, friday_13th.weekday()) == (13, 4)


def test_timespan_schedule_and_refused_expressions() -> None:
    schedule = parse_schedule("00:00:30")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(NOW) == NOW + timedelta(seconds=30)
    for bad in ("* * *", "0 0 0 L * *", "0 0 0 ? * *", "0 0 99 * * *", "soon"):
        with pytest.raises(ValueError, match="schedule expression"):
            parse_schedule(bad)


def test_website_time_zone() -> None:
    function = TimerFunction(
        name="t",
        fn=print,
        trigger_param="timer",
        is_async=False,
        wants_context=False,
        client_param=None,
        schedule="0 0 9 * * *",
    )
    target = resolve_timer(function, {"WEBSITE_TIME_ZONE": "Europe/Paris"})
    assert target.schedule == CronSchedule("0 0 9 * * *", ZoneInfo("Europe/Paris"))
    assert target.schedule.next_after(NOW) == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert "not a known time zone" in resolve_timer(function, {"WEBSITE_TIME_ZONE": "Mars/Base"}).describe(NOW)


def test_use_monitor_default_depends_on_the_interval() -> None:
    assert fires_at_most_once_a_minute(parse_schedule("0 */5 * * * *"), NOW)
    assert not fires_at_most_once_a_minute(parse_schedule("*/30 * * * * *"), NOW)


def test_schedule_monitor_rule() -> None:
    schedule = parse_schedule("0 */5 * * * *")
    status, past_due, save = check_past_due(schedule, None, NOW)
    assert (status.last, status.next, past_due, save) == (None, datetime(2026, 11, 23, 17, 5, tzinfo=UTC), False, True)
    ran = datetime(2026, 11, 23, 16, 50, tzinfo=UTC)
    recorded = ScheduleStatus(ran, schedule.next_after(ran), ran)
    assert check_past_due(schedule, recorded, NOW) == (recorded, True, False)  # 16:55 passed while down
    assert check_past_due(schedule, recorded, ran + timedelta(minutes=1))[1] is False
    changed = check_past_due(parse_schedule("0 0 * * * *"), recorded, NOW)  # hourly now: start afresh
    assert changed[1:] == (False, True)
    assert changed[0].next == datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
