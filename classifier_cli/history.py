"""``classify history ID`` and ``classify monitor``: an orchestration's timeline in the terminal, and the
monitor page that shows it in a browser.

The timeline is read from the management API's history (``showHistory=true``), the same way the monitor
page builds its Gantt chart: the API merges each ``TaskScheduled`` into its ``TaskCompleted`` /
``TaskFailed`` (``ScheduledTime`` is when it was scheduled), a sub-orchestration's creation into its
completion, and a timer is a ``TimerCreated`` and the ``TimerFired`` with the same ``FireAt``. Each
attempt of a retried call is its own row.
"""

from __future__ import annotations

import json
import sys
import webbrowser
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import click
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from classifier_cli.api import LOCAL_HOST, MANAGEMENT_PREFIX

if TYPE_CHECKING:
    from classifier_cli.main import App

#: Where durable_host serves the monitor page (``durable_host.monitor.MONITOR_PATH``).
MONITOR_PATH = f"{MANAGEMENT_PREFIX}/monitor/"

_KINDS = {
    "TaskCompleted": ("activity", "completed"),
    "TaskFailed": ("activity", "failed"),
    "TaskScheduled": ("activity", "running"),
    "SubOrchestrationInstanceCompleted": ("sub-orchestration", "completed"),
    "SubOrchestrationInstanceFailed": ("sub-orchestration", "failed"),
    "SubOrchestrationInstanceCreated": ("sub-orchestration", "running"),
}
_OUTCOME_STYLE = {"completed": "green", "failed": "red", "running": "yellow", "waiting": "yellow", "fired": "dim"}


def parse_time(text: Any) -> float | None:
    """Epoch seconds of a history timestamp (``Z``, offsets, up to 7 fractional digits as .NET sends)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _canonical(value: Any) -> str:
    if isinstance(value, str):
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return json.dumps(value, sort_keys=True)


@dataclass
class Step:
    """One row of the timeline: an activity, a sub-orchestration or a timer (one attempt of it)."""

    kind: str
    name: str
    start: float
    end: float | None
    outcome: str
    attempt: int = 1
    attempts: int = 1
    reason: str | None = None
    input_key: str = ""

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


def timeline(events: Iterable[Mapping[str, Any]]) -> tuple[float | None, float | None, list[Step]]:
    """(orchestration start, its end or None, the steps in start order) from ``historyEvents``."""
    start: float | None = None
    end: float | None = None
    steps: list[Step] = []
    timers: list[tuple[float | None, Step]] = []
    for ev in events:
        kind = str(ev.get("EventType"))
        at = parse_time(ev.get("Timestamp"))
        if at is None:
            continue
        if kind == "ExecutionStarted" and start is None:
            start = at
        elif kind in ("ExecutionCompleted", "ExecutionTerminated"):
            end = at
        elif kind in _KINDS:
            what, outcome = _KINDS[kind]
            pending = outcome == "running"
            scheduled = parse_time(ev.get("ScheduledTime"))
            steps.append(
                Step(
                    what,
                    str(ev.get("FunctionName") or ev.get("Name") or "?"),
                    at if pending or scheduled is None else scheduled,
                    None if pending else at,
                    outcome,
                    reason=str(ev["Reason"]) if ev.get("Reason") else None,
                    input_key=_canonical(ev.get("Input")),
                )
            )
        elif kind == "TimerCreated":
            timer = Step("timer", "timer", at, None, "waiting")
            timers.append((parse_time(ev.get("FireAt")), timer))
            steps.append(timer)
        elif kind == "TimerFired":
            fire_at = parse_time(ev.get("FireAt"))
            for due, timer in timers:
                if timer.end is None and due == fire_at:
                    timer.end, timer.outcome = at, "fired"
                    break
    steps.sort(key=lambda s: s.start)
    calls: dict[tuple[str, str, str], list[Step]] = {}
    for step in steps:
        if step.kind != "timer":
            same = calls.setdefault((step.kind, step.name, step.input_key), [])
            same.append(step)
            step.attempt = len(same)
    for same in calls.values():
        for step in same:
            step.attempts = len(same)
    retried = [s for s in steps if s.kind != "timer" and s.attempt > 1]
    for timer in (s for s in steps if s.kind == "timer" and s.end is not None):
        after = next((s for s in retried if abs(s.start - (timer.end or 0)) < 0.05), None)
        if after is not None:
            timer.name = f"retry delay ({after.name})"
    if start is None and steps:
        start = steps[0].start
    return start, end, steps


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def timeline_table(status: Mapping[str, Any], steps: Sequence[Step], start: float | None) -> Table:
    """The terminal timeline: one row per step with its start (since the orchestration began)."""
    table = Table(title_justify="left")
    columns: list[tuple[str, JustifyMethod]] = [
        ("#", "right"),
        ("activity", "left"),
        ("kind", "left"),
        ("start", "right"),
        ("duration", "right"),
        ("outcome", "left"),
        ("retries", "left"),
    ]
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")
    origin = start if start is not None else 0.0
    for number, step in enumerate(steps, 1):
        outcome = Text(step.outcome, style=_OUTCOME_STYLE.get(step.outcome, ""))
        if step.reason and step.outcome == "failed":
            outcome.append(f": {step.reason.splitlines()[0][:160]}", style="red")
        table.add_row(
            str(number),
            step.name,
            step.kind,
            f"+{format_seconds(step.start - origin)}",
            format_seconds(step.duration) if step.end is not None else step.outcome,
            outcome,
            f"attempt {step.attempt} of {step.attempts}" if step.attempts > 1 else "",
        )
    return table


def summary_line(status: Mapping[str, Any], steps: Sequence[Step], start: float | None, end: float | None) -> str:
    calls = [s for s in steps if s.kind != "timer"]
    failed = sum(1 for s in calls if s.outcome == "failed")
    retried = sum(1 for s in calls if s.attempt > 1)
    took = format_seconds(end - start) if start is not None and end is not None else "still running"
    return (
        f"{status.get('name')} {status.get('instanceId')}: {status.get('runtimeStatus')} · {took} · "
        f"{len(calls)} call(s), {failed} failed attempt(s), {retried} retry(ies), "
        f"{len(steps) - len(calls)} timer(s)"
    )


@click.command()
@click.argument("instance_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline rows as JSON instead of a table.")
@click.pass_obj
def history(app: App, instance_id: str, as_json: bool) -> None:
    """The timeline of a task: each activity, sub-orchestration and timer with its start, duration,
    outcome and retries, from the orchestration history (GET instances/ID?showHistory=true)."""
    status = app.client.history(instance_id)
    start, end, steps = timeline(status.get("historyEvents") or [])
    if as_json:
        rows = []
        for step in steps:
            row = asdict(step)
            del row["input_key"]
            row["duration"] = step.duration
            rows.append(row)
        app.emit_json({"instanceId": status.get("instanceId"), "start": start, "end": end, "steps": rows})
        return
    app.out.print(timeline_table(status, steps, start))
    app.err.print(summary_line(status, steps, start, end), highlight=False)


#: Host names of apps on Azure, which do not serve the monitor page (a local host does, whatever its name).
AZURE_DOMAINS = (".azurewebsites.net", ".azurecontainerapps.io")


def on_azure(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "").endswith(AZURE_DOMAINS)


def monitor_url(base_url: str, instance_id: str | None = None, system_key: str | None = None) -> str:
    """The page on the local host at ``base_url``; for an app on Azure, which serves no such page, the page of
    a local host (``make run``) pointed at it with ``?base=`` (and ``&code=``, its system key)."""
    if not on_azure(base_url):
        url = base_url.rstrip("/") + MONITOR_PATH
    else:
        query = {"base": base_url.rstrip("/"), **({"code": system_key} if system_key else {})}
        url = f"{LOCAL_HOST}{MONITOR_PATH}?{urlencode(query)}"
    return f"{url}#/instances/{quote(instance_id, safe='')}" if instance_id else url


@click.command()
@click.argument("instance_id", metavar="[ID]", required=False)
@click.option(
    "--open/--no-open",
    "open_browser",
    default=None,
    help="Open the page in the default browser (default: when run in a terminal).",
)
@click.pass_obj
def monitor(app: App, instance_id: str | None, open_browser: bool | None) -> None:
    """The monitor page of the local host (instances, timelines, actions): print its URL and open it.

    durable_host serves the page; against Azure, open it from a local host and give it the app's URL
    and durabletask_extension key (README "Monitor page").
    """
    url = monitor_url(app.client.base_url, instance_id, app.client.system_key)
    click.echo(url)
    if on_azure(app.client.base_url):
        app.err.print(
            f"Azure serves no monitor page: this is a local host's (make run), pointed at {app.client.base_url}; "
            "the app's CORS must allow http://127.0.0.1:7071 (durable_host/README.md, Monitor page)",
            highlight=False,
        )
    if open_browser is None:
        open_browser = sys.stdout.isatty()
    if open_browser and not webbrowser.open(url):
        app.err.print("no browser found here: open the URL above yourself", highlight=False)
