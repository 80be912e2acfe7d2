"""Everything the CLI shows: result tables, timings, task lists and progress, with rich.

Results come in two shapes: the orchestration output (from the management API) and the persisted
result (``GET /api/tasks/{id}``). Both are first flattened into :class:`Row` (one image through one
model), so there is a single table. Progress and messages go to stderr and tables to stdout, so
``--json`` output and redirected tables stay clean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from classifier_cli.api import TERMINAL_STATUSES

#: Marks that must survive any shortening of a weights label: results from such weights are suspect.
WEIGHT_WARNINGS = ("RANDOM", "UNVERIFIED")
_TIMINGS = ("queue_ms", "preprocess_ms", "inference_ms", "total_ms")


@dataclass(frozen=True)
class Row:
    """One image through one model: its top-k, or why it failed."""

    image: str
    model: str
    top_k: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    weights: str | None = None
    error: str | None = None


def output_rows(output: Mapping[str, Any]) -> list[Row]:
    """Rows of an orchestration output (README "Progress and result"), in image then model order.

    An image that failed before inference has no per-model entries; it still gets one row, so that
    every submitted image appears in the table with its error.
    """
    models = list(output.get("models") or [])
    weights = output.get("weights") or {}
    rows = []
    for image in output.get("images") or []:
        name = str(image.get("name") or f"#{image.get('index')}")
        predictions = image.get("predictions") or {}
        if not predictions:
            rows.append(Row(name, "—", error=image.get("error") or "no predictions"))
            continue
        for model in models + [m for m in predictions if m not in models]:
            prediction = predictions.get(model)
            if prediction is None:
                continue
            error = prediction.get("error") or image.get("error")
            # A failed row names no weights of its own; the task's label would suggest they were used.
            rows.append(
                Row(
                    name,
                    model,
                    prediction.get("top_k") or (),
                    prediction.get("weights") or (None if error else weights.get(model)),
                    error,
                )
            )
    return rows


def stored_rows(result: Mapping[str, Any]) -> list[Row]:
    """Rows of a persisted result (``GET /api/tasks/{id}``: one record per image and model)."""
    rows = []
    for record in sorted(result.get("results") or [], key=lambda r: (r.get("image_index", 0), r.get("model", ""))):
        top_k = record.get("top_k") or (
            [{"label": record["label"], "probability": record.get("confidence")}] if record.get("label") else []
        )
        rows.append(
            Row(
                str(record.get("image_name")),
                str(record.get("model")),
                top_k,
                record.get("weights"),
                record.get("error"),
            )
        )
    return rows


def short_weights(label: str | None) -> Text:
    """A weights label short enough for a table column, keeping RANDOM / UNVERIFIED visible (in red)."""
    if not label:
        return Text("")
    random = re.match(r"RANDOM WEIGHTS \(seed (\d+)\)", label)
    torchvision = re.match(r"torchvision \w+\.(\w+) from ", label)
    checkpoint = re.match(r"checkpoint (?:.*/)?([^/\s]+) \(sha256 (\w+)\)", label)
    if random:
        short = f"RANDOM (seed {random.group(1)})"
    elif torchvision:
        short = torchvision.group(1) + (" (verified)" if "sha256 verified" in label else "")
    elif checkpoint:
        short = f"{checkpoint.group(1)} (sha256 {checkpoint.group(2)})"
    else:
        short = label if len(label) <= 40 else label[:39] + "…"
    for warning in WEIGHT_WARNINGS:
        if warning in label and warning not in short:
            short += f" {warning}"
    suspect = any(warning in label for warning in WEIGHT_WARNINGS)
    return Text(short, style="bold red" if suspect else "")


def _probability(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else ""


def compact_top_k(top_k: Sequence[Mapping[str, Any]]) -> str:
    """``label p`` pairs joined by ``·``: the whole top-k in one cell."""
    return " · ".join(f"{p.get('label')} {_probability(p.get('probability'))}".rstrip() for p in top_k)


def results_table(rows: Iterable[Row], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("image", overflow="fold")
    table.add_column("model", no_wrap=True)
    table.add_column("top-1", overflow="fold")
    table.add_column("prob", justify="right", no_wrap=True)
    table.add_column("top-k", overflow="fold")
    table.add_column("weights", overflow="fold")
    table.add_column("error", style="red", overflow="fold")
    for row in rows:
        top1 = row.top_k[0] if row.top_k else {}
        table.add_row(  # Text, not str: a cell string is read as rich markup, and "[v2]" in a name is a tag
            Text(row.image),
            Text(row.model),
            Text(str(top1.get("label", ""))),
            _probability(top1.get("probability")),
            Text(compact_top_k(row.top_k[1:])),
            short_weights(row.weights),
            Text(row.error or ""),
        )
    return table


def timings_line(timings: Mapping[str, Any]) -> str:
    """``queue 12 ms · preprocess 9 ms · …`` for the durations the output reports."""
    parts = [f"{key[:-3]} {timings[key]:.0f} ms" for key in _TIMINGS if isinstance(timings.get(key), (int, float))]
    return "timings: " + (" · ".join(parts) if parts else "not reported")


def failed_images(output: Mapping[str, Any] | None) -> bool:
    """Whether a task's output reports any failed image or model (or is missing)."""
    if not output:
        return True
    return output.get("status") != "Completed" or any(row.error for row in output_rows(output))


def print_output(console: Console, output: Mapping[str, Any], title: str | None = None) -> None:
    """A completed task: the table, then whole-task errors, then timings."""
    console.print(results_table(output_rows(output), title=title))
    for key in ("error", "persist_error"):
        if output.get(key):
            console.print(Text(f"{key.replace('_', ' ')}: {output[key]}", style="red"))
    console.print(timings_line(output.get("timings") or {}))


def summary_table(outputs: Mapping[str, Mapping[str, Any]], without_results: int = 0) -> Table:
    """Several tasks' outputs as one table, one row per image: top-1 per model, failed images first.

    A folder of a hundred images is several tasks; their full tables (one row per image and model)
    are what ``--details`` prints. The weights of each model go in the caption, so that random or
    unverified weights stay visible.
    """
    models = list(dict.fromkeys(model for output in outputs.values() for model in output.get("models") or []))
    table = Table(title_justify="left", caption=_weights_caption(outputs, models), caption_justify="left")
    table.add_column("image", overflow="fold")
    table.add_column("task", no_wrap=True)
    for model in models:
        table.add_column(f"{model} top-1", overflow="fold")
    table.add_column("error", style="red", overflow="fold")
    entries = [
        (instance_id, output_rows({**output, "images": [image]}))
        for instance_id, output in outputs.items()
        for image in output.get("images") or []
    ]
    entries.sort(key=lambda entry: not any(row.error for row in entry[1]))  # stable: failures first
    for instance_id, rows in entries:
        top1 = {row.model: _top1(row) for row in rows}
        errors = dict.fromkeys(row.error for row in rows if row.error)
        table.add_row(rows[0].image, instance_id[:8], *(top1.get(model, "") for model in models), "; ".join(errors))
    failed = sum(1 for _, rows in entries if any(row.error for row in rows))
    table.title = f"{len(entries)} image(s) in {len(outputs)} task(s): {failed} failed" + (
        f"; {without_results} more task(s) ended without results (above)" if without_results else ""
    )
    return table


def _top1(row: Row) -> str:
    """``label 0.613``, or nothing for a failed row."""
    best = row.top_k[0] if row.top_k else {}
    return f"{best.get('label', '')} {_probability(best.get('probability'))}".strip()


def _weights_caption(outputs: Mapping[str, Mapping[str, Any]], models: Sequence[str]) -> Text | None:
    """``weights: resnet18 RANDOM (seed 0) · …``: the tasks of one submission share their weights."""
    labels: dict[str, str] = {}
    for output in outputs.values():
        for model, label in (output.get("weights") or {}).items():
            if label:
                labels.setdefault(model, label)
    if not labels:
        return None
    caption = Text("weights: ")
    for number, model in enumerate(models):
        caption.append(("" if number == 0 else " · ") + f"{model} ")
        caption.append_text(short_weights(labels.get(model)))
    return caption


def print_summary(console: Console, statuses: Mapping[str, Mapping[str, Any]]) -> None:
    """Several tasks: one line each (its outcome, or how it ended), then one table of all their images."""
    outputs = {}
    for instance_id, status in statuses.items():
        output = status.get("output")
        outcome = task_outcome(status)
        if outcome is not None and isinstance(output, Mapping):
            outputs[instance_id] = output
            console.print(f"task {escape(instance_id)} · {outcome}", highlight=False)
        else:  # Terminated: the output is the reason; Failed: the error
            ended = f"task {instance_id} · {status.get('runtimeStatus')}" + (f" ({output})" if output else "")
            console.print(Text(ended, style="red"))
    if outputs:
        console.print(summary_table(outputs, without_results=len(statuses) - len(outputs)))


def task_outcome(status: Mapping[str, Any]) -> str | None:
    """The task's own result (``Completed``, ``CompletedWithErrors``, ``Failed``) once it has one.

    An orchestration that ran to its end is ``Completed`` even when every image failed; the task's
    outcome is in its output, and that is what a user asks about.
    """
    output = status.get("output")
    if status.get("runtimeStatus") == "Completed" and isinstance(output, Mapping):
        value = output.get("status")
        return str(value) if value else None
    return None


def status_text(status: Mapping[str, Any]) -> str:
    """``Completed · task Failed``: the runtime status, and the task's outcome where there is one."""
    runtime = str(status.get("runtimeStatus", "?"))
    outcome = task_outcome(status)
    return f"{runtime} · task {outcome}" if outcome else runtime


def print_status(console: Console, status: Mapping[str, Any]) -> None:
    """``status ID``: runtime status and progress, and the result table once completed."""
    runtime = status.get("runtimeStatus", "?")
    console.print(
        f"task {escape(str(status.get('instanceId')))}: [bold]{escape(status_text(status))}[/bold] "
        f"({escape(str(status.get('name')))})"
    )
    console.print(f"created {status.get('createdTime')} · last updated {status.get('lastUpdatedTime')}")
    custom = _custom(status)
    if custom is not None:
        console.print("progress: " + describe_progress(custom).text)
    output = status.get("output")
    if runtime == "Completed" and isinstance(output, Mapping):
        print_output(console, output)
    elif output:  # Failed: the failure details; Terminated: the reason
        console.print(Text(f"output: {output}", style="red" if runtime == "Failed" else ""))


def print_stored(console: Console, result: Mapping[str, Any]) -> None:
    """``result ID``: the persisted task and its result rows."""
    console.print(
        f"task {escape(str(result.get('instance_id')))} (TaskID {result.get('task_id')}): "
        f"[bold]{escape(str(result.get('status')))}[/bold]"
        f" · {result.get('image_count')} image(s) · models {', '.join(result.get('models') or [])}"
    )
    console.print(f"submitted {result.get('submitted_at')} · completed {result.get('completed_at')}")
    if result.get("error"):
        console.print(Text(f"error: {result['error']}", style="red"))
    console.print(results_table(stored_rows(result)))


def instances_table(instances: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title_justify="left")
    for column in ("id", "name", "status", "progress", "created", "last updated"):
        table.add_column(column, overflow="fold")
    for item in instances:
        custom = _custom(item)
        table.add_row(
            str(item.get("instanceId")),
            str(item.get("name")),
            status_text(item),
            describe_progress(custom).text if custom is not None else "",
            str(item.get("createdTime")),
            str(item.get("lastUpdatedTime")),
        )
    return table


# -- progress -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Where a task is, as a progress bar shows it: ``done`` of ``total`` ``unit`` in ``stage``."""

    stage: str
    done: int
    total: int | None
    unit: str

    @property
    def text(self) -> str:
        return f"{self.stage} {self.done}/{self.total if self.total is not None else '?'} {self.unit}"


def describe_progress(custom: Mapping[str, Any] | None) -> Stage:
    """Read the orchestration's ``customStatus``: images count during preprocessing, predictions after.

    This is the exact stage for ``status`` and ``list``, where one task is described on its own.
    Preprocessing counts images and inference one prediction per image and model, so the count changes
    unit between stages; the progress bar uses :func:`images_done` instead.
    """
    custom = custom or {}
    stage = str(custom.get("stage") or "pending")
    if "predictions_total" in custom and stage != "preprocessing":
        return Stage(stage, int(custom.get("predictions_done") or 0), int(custom["predictions_total"]), "predictions")
    total = custom.get("images_total")
    return Stage(stage, int(custom.get("images_done") or 0), int(total) if total is not None else None, "images")


def _custom(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``customStatus`` the orchestration set, if it has set one (it is null until then)."""
    custom = status.get("customStatus")
    return custom if isinstance(custom, Mapping) else None


def images_done(status: Mapping[str, Any], expected: int | None = None) -> tuple[int, int | None]:
    """How many of a task's images are finished, and of how many (None: not known yet).

    The overall bar counts images from start to end, so that its unit never switches and it never
    goes back: nothing is done while preprocessing, inference counts the images' worth of predictions
    made so far, and a task that has ended has settled all its images, classified or failed.
    ``expected`` is the number submitted, when the caller knows it before the task reports it.
    """
    custom = _custom(status) or {}
    total = int(custom["images_total"]) if custom.get("images_total") is not None else expected
    if status.get("runtimeStatus") in TERMINAL_STATUSES:
        if total is None:
            output = status.get("output")
            total = len(output.get("images") or []) if isinstance(output, Mapping) else 0
        return total, total
    predictions_total = int(custom.get("predictions_total") or 0)
    if predictions_total and custom.get("stage") != "preprocessing":
        return int(custom.get("predictions_done") or 0) * (total or 0) // predictions_total, total
    return 0, total


class TaskProgress:
    """One progress bar for every followed task together: images done of all images submitted.

    On a terminal the bar redraws in place. When stderr is a file or a pipe (CI logs, tests) rich
    only draws the bar once at the end, so each change is also written as a line: long work always
    shows that it is moving. Each task that ends says so in a line of its own, in both cases.
    """

    def __init__(self, console: Console, expected: Mapping[str, int | None]) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TimeElapsedColumn(),
            console=console,
        )
        self.bar = self.progress.add_task("pending", total=None)
        self.expected = dict(expected)
        self.statuses: dict[str, Mapping[str, Any]] = {}
        self.last = ""

    def __enter__(self) -> TaskProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, instance_id: str, status: Mapping[str, Any]) -> None:
        """Take a task's latest status document and redraw the bar."""
        ended = status.get("runtimeStatus") in TERMINAL_STATUSES
        if ended and self.statuses.get(instance_id, {}).get("runtimeStatus") not in TERMINAL_STATUSES:
            self.console.print(f"task {escape(instance_id)} ended: {escape(status_text(status))}", highlight=False)
        self.statuses[instance_id] = status
        counts = [images_done(self.statuses.get(i, {}), n) for i, n in self.expected.items()]
        totals = [total for _, total in counts]
        total = None if None in totals else sum(t or 0 for t in totals)
        done = sum(d for d, _ in counts)
        description = self._describe()
        self.progress.update(self.bar, description=description, completed=done, total=total)
        line = f"progress: {description} · {done}/{total if total is not None else '?'} images"
        if not self.console.is_terminal and line != self.last:
            self.console.print(line, highlight=False)
        self.last = line

    def _describe(self) -> str:
        """``inference · tasks 1/3``: the stages of the tasks still running and how many have ended."""
        running = [s for s in self.statuses.values() if s.get("runtimeStatus") not in TERMINAL_STATUSES]
        stages = sorted({describe_progress(_custom(s)).stage for s in running}) or ["done"]
        ended = len(self.statuses) - len(running)
        return f"{'/'.join(stages)} · tasks {ended}/{len(self.expected)}"
