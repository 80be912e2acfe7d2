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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import click
from rich.console import Console
from rich.table import Table

from classifier_cli.api import TERMINAL_STATUSES, ApiError, ClassifierClient
from classifier_cli.files import InputError, chunks, find_images, task_payload
from classifier_cli.render import (
    TaskProgress,
    failed_images,
    instances_table,
    print_output,
    print_status,
    print_stored,
    status_text,
    task_outcome,
)

DEFAULT_URL = "http://127.0.0.1:7071"
#: Width used when output is not a terminal (pipes, CI logs): wide enough that tables do not wrap names.
PIPE_WIDTH = 200


class CliError(click.ClickException):
    """A failure shown as ``error: <message>`` on stderr, without a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class ClassifyGroup(click.Group):
    """Turns every failure of a command into a :class:`CliError` (``--debug`` keeps the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
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
interval_option = click.option(
    "--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True, help="Seconds between polls."
)


@click.group(cls=ClassifyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--base-url", envvar="CLASSIFIER_URL", default=DEFAULT_URL, show_default=True,
    help="The app's origin (env CLASSIFIER_URL), e.g. https://myapp.azurewebsites.net.",
)
@click.option(
    "--key", envvar="CLASSIFIER_KEY", default=None,
    help="Function key (env CLASSIFIER_KEY): x-functions-key on /api, code= on management calls.",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds per HTTP request.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks.")
@click.pass_context
def cli(ctx: click.Context, base_url: str, key: Optional[str], timeout: float, debug: bool) -> None:
    """Classify images with the ResNet classifier app (local host or Azure) over its HTTP API."""
    ctx.obj = App(ClassifierClient(base_url, key, timeout), _console(False), _console(True), debug)


def follow(app: App, pollers: Mapping[str, Callable[[], dict[str, Any]]], interval: float,
           timeout: Optional[float] = None) -> dict[str, dict[str, Any]]:
    """Poll each task until it reaches a terminal runtime status, driving one progress bar per task."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    pending = dict(pollers)
    final: dict[str, dict[str, Any]] = {}
    try:
        with TaskProgress(app.err, list(pollers)) as progress:
            while pending:
                for instance_id, poll in list(pending.items()):
                    status = poll()
                    progress.update(instance_id, status)
                    if status.get("runtimeStatus") in TERMINAL_STATUSES:
                        final[instance_id] = status
                        del pending[instance_id]
                if pending and deadline is not None and time.monotonic() >= deadline:
                    raise CliError(f"still running after {timeout:g} s: {', '.join(pending)}")
                if pending:
                    time.sleep(interval)
    except KeyboardInterrupt:
        raise CliError(f"interrupted; {_still_running(pending)}", 130) from None
    except ApiError as exc:
        if exc.status is not None and exc.status < 500:  # the API's answer about the task itself
            raise
        # The app went away or broke while the tasks may be fine: say which ones to look at again.
        raise CliError(f"{exc.message}; {_still_running(pending)}") from None
    return {instance_id: final[instance_id] for instance_id in pollers}


def _still_running(pending: Mapping[str, object]) -> str:
    return f"not followed to the end: {', '.join(pending)} (they run on; check later with: classify wait ID)"


def report(app: App, statuses: Mapping[str, dict[str, Any]], as_json: bool) -> int:
    """Print finished tasks and return the exit code: 0 if every image went through every model."""
    if as_json:
        app.emit_json(list(statuses.values()))
    for instance_id, status in statuses.items():
        output = status.get("output")
        if not as_json:
            if status.get("runtimeStatus") == "Completed" and isinstance(output, dict):
                print_output(app.out, output, title=f"task {instance_id} · {task_outcome(status)}")
            else:
                print_status(app.out, status)
    return max((exit_code(status) for status in statuses.values()), default=0)


def exit_code(status: Mapping[str, Any]) -> int:
    """The README's exit code for one task: 1 once it has ended without every image through every model.

    A task still running has failed nothing yet (0); the API's own errors exit 2 elsewhere.
    """
    if status.get("runtimeStatus") in ("Pending", "Running", "Suspended"):
        return 0
    output = status.get("output")
    return 1 if not isinstance(output, dict) or failed_images(output) else 0


def _submit_all(app: App, paths: Sequence[Path], models: Sequence[str], top_k: int,
                batch: int) -> list[dict[str, Any]]:
    """Submit the images in tasks of at most ``batch``; names what was already submitted if one fails."""
    images = find_images(paths)
    groups = list(chunks(images, batch))
    submitted: list[dict[str, Any]] = []
    for number, group in enumerate(groups, 1):
        app.err.print(f"submitting task {number}/{len(groups)}: {len(group)} image(s)…", highlight=False)
        try:
            answer = app.client.submit(task_payload(group, models, top_k))
        except ApiError as exc:
            if not submitted:
                raise
            ids = ", ".join(s["id"] for s in submitted)
            raise CliError(f"{exc.message} (tasks already submitted and still running: {ids})") from None
        submitted.append(answer.body)
    return submitted


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-m", "--model", "models", multiple=True, default=("resnet18",), show_default=True,
              help="Model to run; repeat for several (-m resnet18 -m resnet50).")
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Predictions per image.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per task (the server refuses more than MAX_IMAGES_PER_TASK, 32 by default).")
@click.option("--follow/--no-follow", "follow_tasks", default=True, show_default=True,
              help="Follow the task(s) with progress and print the results.")
@interval_option
@json_option
@click.pass_obj
def submit(app: App, paths: Sequence[Path], models: Sequence[str], top_k: int, batch: int, follow_tasks: bool,
           interval: float, as_json: bool) -> None:
    """Upload images and follow the task(s) to the results.

    PATH... are image files or folders. Folders are searched recursively by image extension; a file
    named explicitly is always sent (the server says per image what it could not read). More than
    --batch images become several tasks, submitted and followed together.
    """
    submitted = _submit_all(app, paths, models, top_k, batch)
    if not follow_tasks:
        if as_json:
            app.emit_json(submitted)
            return
        table = Table("id", "status URL", title_justify="left")
        for answer in submitted:
            table.add_row(answer["id"], answer["statusQueryGetUri"])
        app.out.print(table)
        return
    pollers = {
        answer["id"]: (lambda url=answer["statusQueryGetUri"]: app.client.status_at(url)) for answer in submitted
    }
    raise SystemExit(report(app, follow(app, pollers, interval), as_json))


@cli.command()
@click.argument("instance_id")
@json_option
@click.pass_obj
def status(app: App, instance_id: str, as_json: bool) -> None:
    """Status and progress of a task; results when done.

    Reads the management API (GET instances/INSTANCE_ID), so it works while the task runs and until
    its history is purged.
    """
    document = app.client.status(instance_id)
    if as_json:
        app.emit_json(document)
    else:
        print_status(app.out, document)
    raise SystemExit(exit_code(document))


def _split_csv(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@cli.command(name="list")
@click.option("--status", "statuses", multiple=True, metavar="STATUS[,STATUS]",
              help="Only these runtime statuses, e.g. Running,Completed (repeatable).")
@click.option("--outcome", "outcomes", multiple=True, metavar="OUTCOME[,OUTCOME]",
              help="Only tasks that ended with this outcome: Completed, CompletedWithErrors, Failed (repeatable).")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many tasks, newest first.")
@json_option
@click.pass_obj
def list_tasks(app: App, statuses: Sequence[str], outcomes: Sequence[str], top: int, as_json: bool) -> None:
    """List tasks, newest first; optionally only some runtime statuses or task outcomes.

    The management API's instance query has no order, so every page is read (following its
    continuation token) and the newest --top are shown.
    """
    wanted = _split_csv(statuses)
    outcome_filter = {o.lower() for o in _split_csv(outcomes)}
    everything = [
        item for item in app.client.instances(wanted)
        if not outcome_filter or (task_outcome(item) or "").lower() in outcome_filter
    ]
    instances = sorted(everything, key=lambda item: str(item.get("createdTime")), reverse=True)[:top]
    if as_json:
        app.emit_json(instances)
    else:
        app.out.print(instances_table(instances))
        app.err.print(f"{len(instances)} task(s)", highlight=False)


@cli.command()
@click.argument("instance_id")
@click.option("--timeout", "wait_timeout", type=click.FloatRange(min=0), default=None,
              help="Give up (exit 2) after this many seconds; the task keeps running.")
@interval_option
@json_option
@click.pass_obj
def wait(app: App, instance_id: str, wait_timeout: Optional[float], interval: float, as_json: bool) -> None:
    """Follow a task with a progress bar until it ends."""
    statuses = follow(app, {instance_id: lambda: app.client.status(instance_id)}, interval, wait_timeout)
    raise SystemExit(report(app, statuses, as_json))


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
        app.out.print(f"termination of task {instance_id} requested", highlight=False)


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
        app.out.print(f"purged the history of task {instance_id} ({deleted} instance(s) deleted)", highlight=False)


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
