"""``classify``: submit local images to the classifier, follow tasks and manage them, over HTTP only.

The commands are thin: :mod:`classifier_cli.api` makes the calls, :mod:`classifier_cli.files` finds
and packs images, :mod:`classifier_cli.render` shows the answers. This module wires them to click and
owns the one place where failures become messages and exit codes:

* 0 — everything asked for succeeded (for ``submit`` / ``wait``: every image through every model);
* 1 — the task(s) ran but some image or model failed, or a task ended Failed / Terminated;
* 2 — the API refused a call or could not be reached, bad usage, or ``wait --timeout`` ran out;
* 130 — interrupted while following (the tasks keep running on the server).

Tables go to stdout and progress / messages to stderr, so ``--json`` output can be piped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from classifier_cli.api import (
    LOCAL_HOST,
    RUNTIME_STATUSES,
    SESSION_PREFIX,
    TERMINAL_STATUSES,
    ApiError,
    ClassifierClient,
)
from classifier_cli.enqueue import enqueue
from classifier_cli.files import InputError, find_images, task_groups, task_payload
from classifier_cli.history import history, monitor
from classifier_cli.render import (
    TaskProgress,
    failed_images,
    instances_table,
    print_output,
    print_status,
    print_stored,
    print_summary,
    task_outcome,
)

#: Width used when output is not a terminal (pipes, CI logs): wide enough that tables do not wrap names.
PIPE_WIDTH = 200
#: Exit code after Ctrl-C while following, as shells report a process ended by SIGINT (128 + 2).
INTERRUPTED = 130


class CliError(click.ClickException):
    """A failure shown as ``error: <message>`` on stderr, without a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click's stubs say ClassVar; click reads the instance's

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class ClassifyGroup(click.Group):
    """Turns every failure of a command into a :class:`CliError` (``--debug`` keeps the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # click would say "Aborted!" and exit 1, which means "an image failed"
            raise CliError("interrupted", INTERRUPTED) from None
        except Exception as exc:
            if isinstance(ctx.obj, App) and ctx.obj.debug:
                raise
            if isinstance(exc, (ApiError, InputError)):
                raise CliError(str(exc)) from None
            raise CliError(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)") from None


@dataclass
class App:
    """What every command needs, built once from the global options."""

    client: ClassifierClient
    out: Console
    err: Console
    debug: bool

    def emit_json(self, value: Any) -> None:
        click.echo(json.dumps(value, indent=2))


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of tables.")
details_option = click.option(
    "--details", is_flag=True, help="With several tasks: each task's full table too, not only the summary."
)
interval_option = click.option(
    "--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True, help="Seconds between polls."
)


@click.group(cls=ClassifyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--base-url",
    envvar="CLASSIFIER_URL",
    default=LOCAL_HOST,
    show_default=True,
    help="The app's origin (env CLASSIFIER_URL), e.g. https://myapp.azurewebsites.net.",
)
@click.option(
    "--key",
    envvar="CLASSIFIER_KEY",
    default=None,
    help="Function key (env CLASSIFIER_KEY): x-functions-key on /api routes.",
)
@click.option(
    "--system-key",
    envvar="CLASSIFIER_SYSTEM_KEY",
    default=None,
    help="The Durable extension's system key (env CLASSIFIER_SYSTEM_KEY), code= on management calls (status, "
    "list, wait, history, terminate, purge) on Azure, which refuse a function key; --key when not given.",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds per HTTP request."
)
@click.option("--debug", is_flag=True, help="Show Python tracebacks.")
@click.pass_context
def cli(
    ctx: click.Context, base_url: str, key: str | None, system_key: str | None, timeout: float, debug: bool
) -> None:
    """Classify images with the ResNet classifier app (local host or Azure) over its HTTP API."""
    client = ClassifierClient(base_url, key, timeout, system_key=system_key)
    ctx.obj = App(client, _console(False), _console(True), debug)


cli.add_command(history)
cli.add_command(monitor)
cli.add_command(enqueue)


@dataclass(frozen=True)
class Followed:
    """A task to follow: how to poll its status, and how many images it has (None: not known)."""

    poll: Callable[[], dict[str, Any]]
    images: int | None = None


class Unfinished(Exception):
    """Following stopped before every task ended; ``finished`` are those that had, in order."""

    def __init__(
        self, reason: str, finished: Mapping[str, dict[str, Any]], pending: Sequence[str], exit_code: int
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.finished = finished
        self.pending = pending
        self.exit_code = exit_code


def follow(
    app: App, tasks: Mapping[str, Followed], interval: float, timeout: float | None = None
) -> dict[str, dict[str, Any]]:
    """Poll each task until it reaches a terminal runtime status, driving one progress bar for all.

    Raises :class:`Unfinished` on Ctrl-C, on ``timeout`` and when the app stops answering, so that
    the caller can still show the tasks that had finished.
    """
    deadline = time.monotonic() + timeout if timeout is not None else None
    pending = dict(tasks)
    final: dict[str, dict[str, Any]] = {}

    def unfinished(reason: str, exit_code: int) -> Unfinished:
        done = {instance_id: final[instance_id] for instance_id in tasks if instance_id in final}
        return Unfinished(reason, done, list(pending), exit_code)

    try:
        with TaskProgress(app.err, {instance_id: task.images for instance_id, task in tasks.items()}) as progress:
            while pending:
                for instance_id, task in list(pending.items()):
                    status = task.poll()
                    progress.update(instance_id, status)
                    if status.get("runtimeStatus") in TERMINAL_STATUSES:
                        final[instance_id] = status
                        del pending[instance_id]
                if pending and deadline is not None and time.monotonic() >= deadline:
                    raise unfinished(f"still running after {timeout:g} s", 2)
                if pending:
                    time.sleep(interval)
    except KeyboardInterrupt:
        raise unfinished("interrupted", INTERRUPTED) from None
    except ApiError as exc:
        answer_about_the_task = exc.status is not None and exc.status < 500 and exc.status != 429
        if answer_about_the_task and not final:
            raise
        # The app went away, broke or throttles while the tasks may be fine, or one task is gone: say which
        # ones to look at again, after the results of those that had finished.
        raise unfinished(exc.message, 2) from None
    return {instance_id: final[instance_id] for instance_id in tasks}


def follow_and_report(
    app: App, tasks: Mapping[str, Followed], interval: float, timeout: float | None, as_json: bool, details: bool
) -> NoReturn:
    """Follow the tasks, print them and exit with the README's code; when stopped early, print what
    had finished and the ``classify wait`` command that follows the rest."""
    try:
        statuses = follow(app, tasks, interval, timeout)
    except Unfinished as stop:
        report(app, stop.finished, as_json, details)
        raise CliError(
            f"{stop.reason}: {', '.join(stop.pending)} not followed to the end {_run_on(stop.pending)}", stop.exit_code
        ) from None
    raise SystemExit(report(app, statuses, as_json, details))


def _run_on(instance_ids: Sequence[str]) -> str:
    """How to pick up tasks this command stopped watching: they go on running on the server."""
    return f"(the tasks run on; follow them with: classify wait {' '.join(instance_ids)})"


def report(app: App, statuses: Mapping[str, dict[str, Any]], as_json: bool, details: bool = False) -> int:
    """Print finished tasks and return the exit code: 0 if every image went through every model.

    One task prints its full table; several print one line each and one summary table of all their
    images, with the full tables first when ``details`` asks for them.
    """
    if as_json:
        app.emit_json(list(statuses.values()))
    elif len(statuses) == 1 or details:
        for instance_id, status in statuses.items():
            output = status.get("output")
            if status.get("runtimeStatus") == "Completed" and isinstance(output, dict):
                print_output(app.out, output, title=f"task {instance_id} · {task_outcome(status)}")
            else:
                print_status(app.out, status)
    if len(statuses) > 1 and not as_json:
        print_summary(app.out, statuses)
    return max((exit_code(status) for status in statuses.values()), default=0)


def exit_code(status: Mapping[str, Any]) -> int:
    """The README's exit code for one task: 1 once it has ended without every image through every model.

    A task still running has failed nothing yet (0); the API's own errors exit 2 elsewhere.
    """
    if status.get("runtimeStatus") in ("Pending", "Running", "Suspended"):
        return 0
    output = status.get("output")
    return 1 if not isinstance(output, dict) or failed_images(output) else 0


def _submit_all(
    app: App, paths: Sequence[Path], models: Sequence[str], top_k: int, batch: int, routing: Mapping[str, str]
) -> list[tuple[dict[str, Any], int]]:
    """Submit the images in tasks of at most ``batch``: each task's check-status answer and image count.

    Names what was already submitted if one submission fails.
    """
    images = find_images(paths)
    groups = list(task_groups(images, batch))
    submitted: list[tuple[dict[str, Any], int]] = []
    for number, group in enumerate(groups, 1):
        app.err.print(f"submitting task {number}/{len(groups)}: {len(group)} image(s)…", highlight=False)
        try:
            answer = app.client.submit(task_payload(group, models, top_k, routing))
        except (ApiError, KeyboardInterrupt) as exc:
            if not submitted:
                raise
            ids = [body["id"] for body, _ in submitted]
            if isinstance(exc, KeyboardInterrupt):
                raise CliError(
                    f"interrupted while submitting: {', '.join(ids)} submitted {_run_on(ids)}", INTERRUPTED
                ) from None
            raise CliError(f"{exc.message}: {', '.join(ids)} already submitted {_run_on(ids)}") from None
        submitted.append((answer, len(group)))
    return submitted


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    default=("resnet18",),
    show_default=True,
    help="Model to run; repeat for several (-m resnet18 -m resnet50).",
)
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Predictions per image.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Images per task (the server refuses more than MAX_IMAGES_PER_TASK, 32 by default).",
)
@click.option(
    "--follow/--no-follow",
    "follow_tasks",
    default=True,
    show_default=True,
    help="Follow the task(s) with progress and print the results.",
)
@click.option("--session", help="Run the task(s) after the session's earlier tasks, one at a time, in order.")
@click.option("--reply-to", help="A queue name or an allowed callback URL that gets each task's outcome.")
@details_option
@interval_option
@json_option
@click.pass_obj
def submit(
    app: App,
    paths: Sequence[Path],
    models: Sequence[str],
    top_k: int,
    batch: int,
    follow_tasks: bool,
    session: str | None,
    reply_to: str | None,
    details: bool,
    interval: float,
    as_json: bool,
) -> None:
    """Upload images and follow the task(s) to the results.

    PATH... are image files or folders. Folders are searched recursively by image extension; a file
    named explicitly is always sent (the server says per image what it could not read). More than
    --batch images become several tasks, submitted and followed together: one progress bar and one
    summary table (one row per image) for all of them.
    """
    routing = {key: value for key, value in (("session", session), ("reply_to", reply_to)) if value}
    submitted = _submit_all(app, paths, models, top_k, batch, routing)
    if not follow_tasks:
        answers = [answer for answer, _ in submitted]
        if as_json:
            app.emit_json(answers)
            return
        table = Table("id", "status URL", title_justify="left")
        for answer in answers:
            table.add_row(answer["id"], answer["statusQueryGetUri"])
        app.out.print(table)
        return
    polls = {answer["id"]: partial(app.client.status_at, answer["statusQueryGetUri"]) for answer, _ in submitted}
    tasks = {
        answer["id"]: Followed(queued_in_session(polls[answer["id"]]) if session else polls[answer["id"]], size)
        for answer, size in submitted
    }
    follow_and_report(app, tasks, interval, None, as_json, details)


def session_aware(
    client: ClassifierClient, instance_id: str, poll: Callable[[], dict[str, Any]]
) -> Callable[[], dict[str, Any]]:
    """``poll``, but a task waiting in a session's queue (404: no instance yet) is Pending, not unknown."""

    def poll_or_queued() -> dict[str, Any]:
        try:
            return poll()
        except ApiError as exc:
            waiting = client.waiting_in_session(instance_id) if exc.status == 404 else None
            if waiting is None:
                raise
            return waiting

    return poll_or_queued


def queued_in_session(poll: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """A session's task has no instance until its turn comes: until then its status URL answers 404."""

    def poll_queued() -> dict[str, Any]:
        try:
            return poll()
        except ApiError as exc:
            if exc.status != 404:
                raise
            return {"runtimeStatus": "Pending", "customStatus": {"stage": "queued in its session"}}

    return poll_queued


@cli.command()
@click.argument("instance_id")
@json_option
@click.pass_obj
def status(app: App, instance_id: str, as_json: bool) -> None:
    """Status and progress of a task; results when done.

    Reads the management API (GET instances/INSTANCE_ID), so it works while the task runs and until
    its history is purged.
    """
    document = session_aware(app.client, instance_id, partial(app.client.status, instance_id))()
    if as_json:
        app.emit_json(document)
    else:
        print_status(app.out, document)
    raise SystemExit(exit_code(document))


def ended_as(item: Mapping[str, Any]) -> str:
    """What ``--outcome`` matches: the task's own outcome, or how its orchestration ended without one
    (``Failed``, ``Terminated``); empty while it runs."""
    runtime = str(item.get("runtimeStatus", ""))
    return task_outcome(item) or (runtime if runtime in TERMINAL_STATUSES - {"Completed"} else "")


def _split_csv(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@cli.command(name="list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS[,STATUS]",
    help="Only these runtime statuses, e.g. Running,Completed (repeatable).",
)
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    metavar="OUTCOME[,OUTCOME]",
    help="Only tasks that ended with this outcome: Completed, CompletedWithErrors, Failed, Terminated (repeatable).",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many tasks, newest first."
)
@json_option
@click.pass_obj
def list_tasks(app: App, statuses: Sequence[str], outcomes: Sequence[str], top: int, as_json: bool) -> None:
    """List tasks, newest first; optionally only some runtime statuses or task outcomes.

    The management API's instance query has no order, so every page is read (following its
    continuation token) and the newest --top are shown.
    """
    canonical = {status.lower(): status for status in RUNTIME_STATUSES}
    unknown = [status for status in _split_csv(statuses) if status.lower() not in canonical]
    if unknown:  # the API ignores a name it does not know, and with none left lists every task
        raise click.BadParameter(
            f"{', '.join(unknown)}; choose from {', '.join(RUNTIME_STATUSES)}", param_hint="--status"
        )
    wanted = [canonical[status.lower()] for status in _split_csv(statuses)]
    outcome_filter = {o.lower() for o in _split_csv(outcomes)}
    everything = [
        item
        for item in app.client.instances(wanted)
        if not str(item.get("instanceId", "")).startswith(SESSION_PREFIX)  # a session's queue is not a task
        and (not outcome_filter or ended_as(item).lower() in outcome_filter)
    ]
    instances = sorted(everything, key=lambda item: str(item.get("createdTime")), reverse=True)[:top]
    if as_json:
        app.emit_json(instances)
    else:
        app.out.print(instances_table(instances))
        app.err.print(f"{len(instances)} task(s)", highlight=False)


@cli.command()
@click.argument("instance_ids", metavar="ID...", nargs=-1, required=True)
@click.option(
    "--timeout",
    "wait_timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up (exit 2) after this many seconds; the tasks keep running.",
)
@details_option
@interval_option
@json_option
@click.pass_obj
def wait(
    app: App, instance_ids: Sequence[str], wait_timeout: float | None, details: bool, interval: float, as_json: bool
) -> None:
    """Follow one or more tasks with one progress bar until they end, then print their results."""
    tasks = {
        instance_id: Followed(session_aware(app.client, instance_id, partial(app.client.status, instance_id)))
        for instance_id in dict.fromkeys(instance_ids)
    }
    follow_and_report(app, tasks, interval, wait_timeout, as_json, details)


@cli.command()
@click.argument("instance_id")
@click.option("--reason", default="terminated with the classify CLI", show_default=True)
@json_option
@click.pass_obj
def terminate(app: App, instance_id: str, reason: str, as_json: bool) -> None:
    """Stop a running task (it ends as Terminated)."""
    app.client.terminate(instance_id, reason)
    if as_json:
        app.emit_json({"id": instance_id, "terminateRequested": True, "reason": reason})
    else:
        app.out.print(f"termination of task {escape(instance_id)} requested", highlight=False)


@cli.command()
@click.argument("instance_id")
@json_option
@click.pass_obj
def purge(app: App, instance_id: str, as_json: bool) -> None:
    """Delete a task's orchestration history.

    The persisted result stays in the database and is still available with `classify result ID`.
    """
    deleted = app.client.purge(instance_id)
    if as_json:
        app.emit_json({"id": instance_id, "instancesDeleted": deleted})
    else:
        app.out.print(
            f"purged the history of task {escape(instance_id)} ({deleted} instance(s) deleted)", highlight=False
        )


@cli.command()
@click.argument("task_ref", metavar="ID")
@json_option
@click.pass_obj
def result(app: App, task_ref: str, as_json: bool) -> None:
    """The persisted result of a task (id or TaskID).

    GET /api/tasks/ID: the rows written to the database, available after the history is purged.
    """
    stored = app.client.result(task_ref)
    if as_json:
        app.emit_json(stored)
    else:
        print_stored(app.out, stored)


def main() -> None:
    """Console-script entry point (``classify``)."""
    cli(prog_name="classify")
