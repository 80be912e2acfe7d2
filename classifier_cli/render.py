"""Everything the CLI shows: result tables, timings, task lists and progress, with rich.

Results come in two shapes: the orchestration output (from the management API) and the persisted
result (``GET /api/tasks/{id}``). Both are first flattened into :class:`Row` (one image through one
model), so there is a single table. Progress and messages go to stderr and tables to stdout, so
``--json`` output and redirected tables stay clean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

#: Marks that must survive any shortening of a weights label: results from such weights are suspect.
WEIGHT_WARNINGS = ("RANDOM", "UNVERIFIED")
_TIMINGS = ("queue_ms", "preprocess_ms", "inference_ms", "total_ms")


@dataclass(frozen=True)
class Row:
    """One image through one model: its top-k, or why it failed."""

    image: str
    model: str
    top_k: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    weights: Optional[str] = None
    error: Optional[str] = None


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
                Row(name, model, prediction.get("top_k") or (), prediction.get("weights") or
                    (None if error else weights.get(model)), error)
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
            Row(str(record.get("image_name")), str(record.get("model")), top_k, record.get("weights"), record.get("error"))
        )
    return rows


def short_weights(label: Optional[str]) -> Text:
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


def results_table(rows: Iterable[Row], title: Optional[str] = None) -> Table:
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
        table.add_row(
            row.image,
            row.model,
            str(top1.get("label", "")),
            _probability(top1.get("probability")),
            compact_top_k(row.top_k[1:]),
            short_weights(row.weights),
            row.error or "",
        )
    return table


def timings_line(timings: Mapping[str, Any]) -> str:
    """``queue 12 ms · preprocess 9 ms · …`` for the durations the output reports."""
    parts = [
        f"{key[:-3]} {timings[key]:.0f} ms" for key in _TIMINGS if isinstance(timings.get(key), (int, float))
    ]
    return "timings: " + (" · ".join(parts) if parts else "not reported")


def failed_images(output: Optional[Mapping[str, Any]]) -> bool:
    """Whether a task's output reports any failed image or model (or is missing)."""
    if not output:
        return True
    return output.get("status") != "Completed" or any(row.error for row in output_rows(output))


def print_output(console: Console, output: Mapping[str, Any], title: Optional[str] = None) -> None:
    """A completed task: the table, then whole-task errors, then timings."""
    console.print(results_table(output_rows(output), title=title))
    for key in ("error", "persist_error"):
        if output.get(key):
            console.print(Text(f"{key.replace('_', ' ')}: {output[key]}", style="red"))
    console.print(timings_line(output.get("timings") or {}))


def task_outcome(status: Mapping[str, Any]) -> Optional[str]:
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
    console.print(f"task {status.get('instanceId')}: [bold]{status_text(status)}[/bold] ({status.get('name')})")
    console.print(f"created {status.get('createdTime')} · last updated {status.get('lastUpdatedTime')}")
    custom = status.get("customStatus")
    if isinstance(custom, Mapping):
        console.print("progress: " + describe_progress(custom).text)
    output = status.get("output")
    if runtime == "Completed" and isinstance(output, Mapping):
        print_output(console, output)
    elif output:  # Failed: the failure details; Terminated: the reason
        console.print(Text(f"output: {output}", style="red" if runtime == "Failed" else ""))


def print_stored(console: Console, result: Mapping[str, Any]) -> None:
    """``result ID``: the persisted task and its result rows."""
    console.print(
        f"task {result.get('instance_id')} (TaskID {result.get('task_id')}): [bold]{result.get('status')}[/bold]"
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
        custom = item.get("customStatus")
        table.add_row(
            str(item.get("instanceId")),
            str(item.get("name")),
            status_text(item),
            describe_progress(custom).text if isinstance(custom, Mapping) else "",
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
    total: Optional[int]
    unit: str

    @property
    def text(self) -> str:
        return f"{self.stage} {self.done}/{self.total if self.total is not None else '?'} {self.unit}"


def describe_progress(custom: Optional[Mapping[str, Any]]) -> Stage:
    """Read the orchestration's ``customStatus``: images count during preprocessing, predictions after.

    Preprocessing is one activity per image; inference is one prediction per image and model, so the
    bar restarts at the inference stage with the larger total instead of guessing a combined one.
    """
    custom = custom or {}
    stage = str(custom.get("stage") or "pending")
    if "predictions_total" in custom and stage != "preprocessing":
        return Stage(stage, int(custom.get("predictions_done") or 0), int(custom["predictions_total"]), "predictions")
    total = custom.get("images_total")
    return Stage(stage, int(custom.get("images_done") or 0), int(total) if total is not None else None, "images")


class TaskProgress:
    """One progress bar per followed task, fed with management-API status documents.

    On a terminal the bars redraw in place. When stderr is a file or a pipe (CI logs, tests) rich
    only draws the bars once at the end, so each change of stage or count is also written as a line:
    long work always shows that it is moving.
    """

    def __init__(self, console: Console, instance_ids: Sequence[str]) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.bars = {
            instance_id: self.progress.add_task(f"{instance_id[:8]} pending", total=None, unit="")
            for instance_id in instance_ids
        }
        self.last: dict[str, str] = {}

    def __enter__(self) -> "TaskProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, instance_id: str, status: Mapping[str, Any]) -> None:
        custom = status.get("customStatus")
        stage = describe_progress(custom if isinstance(custom, Mapping) else None)
        runtime = str(status.get("runtimeStatus", ""))
        label = stage.stage if runtime in ("Running", "Pending", "Completed", "") else runtime.lower()
        finished = runtime == "Completed"
        total = stage.total if stage.total else None
        self.progress.update(
            self.bars[instance_id],
            description=f"{instance_id[:8]} {label}",
            completed=(total or 0) if finished else stage.done,
            total=total,
            unit=stage.unit,
        )
        line = f"task {instance_id}: {runtime or 'Pending'} · {stage.text}"
        if not self.console.is_terminal and self.last.get(instance_id) != line:
            self.console.print(line, highlight=False)
        self.last[instance_id] = line
