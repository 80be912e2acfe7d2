"""Timer triggers: run functions on their schedule, with ``runOnStartup`` and the schedule monitor.

As the Functions host's timer listener: occurrences are computed from the schedule, one invocation
at a time per function (a run that outlasts occurrences skips them), and the function receives
the ``TimerInfo`` JSON the worker's ``timerTrigger`` converter turns into ``func.TimerRequest``.
With ``useMonitor`` (default: schedules at least a minute apart) the last and next occurrences are
kept in the task hub; an occurrence that passed while the host was down fires once at startup
with ``past_due`` set, as Azure's ``ScheduleMonitor`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import azure_worker
from .indexing import TimerFunction
from .queue_triggers import Invoke
from .schedules import CronSchedule, IntervalSchedule, fires_at_most_once_a_minute, parse_schedule
from .store import Store
from .trigger_settings import resolve_setting_refs, schedule_time_zone

log = logging.getLogger("durable_host")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class ScheduleStatus:
    """What Azure's schedule monitor records per function (``Last`` is unset until the first run)."""

    last: datetime | None
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "Last": _iso(self.last) if self.last else "0001-01-01T00:00:00",
            "Next": _iso(self.next),
            "LastUpdated": _iso(self.last_updated),
        }

    @staticmethod
    def from_row(row: Mapping[str, Any]) -> ScheduleStatus:
        last = row["last"]
        return ScheduleStatus(
            datetime.fromisoformat(last) if last else None,
            datetime.fromisoformat(row["next"]),
            datetime.fromisoformat(row["last_updated"]),
        )


@dataclass(frozen=True)
class TimerTarget:
    """A timer function with its parsed schedule and whether it is monitored, or why it cannot run."""

    function: TimerFunction
    schedule: CronSchedule | IntervalSchedule | None = None
    expression: str = ""
    monitor: bool = False
    error: str | None = None

    def describe(self, now: datetime) -> str:
        if self.schedule is None:
            return f"timerTrigger (error: {self.error})"
        return f"timerTrigger (schedule '{self.expression}', next {_iso(self.schedule.next_after(now))})"


def resolve_timer(function: TimerFunction, environ: Mapping[str, str] = os.environ) -> TimerTarget:
    """Resolve ``%Setting%`` and parse the schedule; Azure reports a bad one per function."""
    try:
        expression = resolve_setting_refs(function.schedule, environ)
        schedule = parse_schedule(expression, schedule_time_zone(environ))
    except ValueError as exc:
        return TimerTarget(function, error=str(exc))
    monitor = function.use_monitor
    if monitor is None:
        monitor = fires_at_most_once_a_minute(schedule, _now())
    return TimerTarget(function, schedule, expression, monitor)


def check_past_due(
    schedule: CronSchedule | IntervalSchedule, status: ScheduleStatus | None, now: datetime
) -> tuple[ScheduleStatus, bool, bool]:
    """Azure's ``ScheduleMonitor.CheckPastDueAsync``: (status, past due?, status changed and must be saved).

    No record yet, or a record whose ``Next`` the schedule would no longer compute (the schedule
    changed), starts afresh from ``now``; otherwise the function is past due when ``Next`` passed.
    """
    fresh = ScheduleStatus(status.last if status else None, schedule.next_after(now), now)
    if status is None:
        return fresh, False, True
    if schedule.next_after(status.last or status.last_updated) != status.next:
        return fresh, False, True
    return status, now > status.next, False


class TimerListener:
    """Runs one timer function on its schedule."""

    def __init__(self, target: TimerTarget, store: Store, invoke: Invoke) -> None:
        assert target.schedule is not None  # TimerTriggers starts only resolved targets
        self.function = target.function
        self.schedule = target.schedule
        self.monitor = target.monitor
        self.store = store
        self.invoke = invoke
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"timer:{self.function.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        status: ScheduleStatus | None = None
        past_due = False
        if self.monitor:
            row = await self.store.read_timer_status(self.function.name)
            status, past_due, changed = check_past_due(
                self.schedule, ScheduleStatus.from_row(row) if row else None, _now()
            )
            if changed:
                await self._save(status)
        if past_due or self.function.run_on_startup:
            status = await self._fire(_now(), status, past_due=past_due)
        while True:
            occurrence = self.schedule.next_after(_now())
            while (wait := (occurrence - _now()).total_seconds()) > 0:
                # a minute at most: the loop's monotonic clock stops while a laptop sleeps, the wall clock does not
                await asyncio.sleep(min(wait, 60.0))
            try:
                status = await self._fire(occurrence, status, past_due=False)
            except Exception:  # the task hub or the worker's converter failed: log it, keep the schedule alive
                log.exception("Function '%s': timer occurrence %s failed", self.function.name, _iso(occurrence))

    async def _fire(self, occurrence: datetime, status: ScheduleStatus | None, past_due: bool) -> ScheduleStatus | None:
        """One invocation; a failure is logged (by the invoker) and the schedule goes on, as on Azure."""
        info = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": status.to_json() if status else None,
            "IsPastDue": past_due,
        }
        argument = azure_worker.decode("timerTrigger", "json", json.dumps(info))
        with contextlib.suppress(Exception):  # the invoker logged it; the next occurrence still fires
            await self.invoke(self.function, {self.function.trigger_param: argument})
        if not self.monitor:
            return None
        updated = ScheduleStatus(occurrence, self.schedule.next_after(occurrence), occurrence)
        await self._save(updated)
        return updated

    async def _save(self, status: ScheduleStatus) -> None:
        last = _iso(status.last) if status.last else None
        await self.store.submit(
            [Store.save_timer_status(self.function.name, last, _iso(status.next), _iso(status.last_updated))]
        )


class TimerTriggers:
    """Every timer listener of the app: started with the host, stopped before it."""

    def __init__(self, targets: Sequence[TimerTarget], store: Store, invoke: Invoke) -> None:
        self.targets = targets
        self.store = store
        self.invoke = invoke
        self.listeners: list[TimerListener] = []

    def start(self) -> None:
        for target in self.targets:
            if target.schedule is None:
                log.error("Function '%s' is in error and will not run: %s", target.function.name, target.error)
                continue
            listener = TimerListener(target, self.store, self.invoke)
            listener.start()
            self.listeners.append(listener)

    async def stop(self) -> None:
        await asyncio.gather(*(listener.stop() for listener in self.listeners))
