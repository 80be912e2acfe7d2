"""Rendering: an orchestration output (README shape) and a persisted result become one readable table."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rich.console import Console

from classifier_cli.render import (
    TaskProgress,
    describe_progress,
    failed_images,
    images_done,
    instances_table,
    output_rows,
    print_output,
    print_status,
    print_stored,
    print_summary,
    short_weights,
    timings_line,
)

pytestmark = pytest.mark.unit

RANDOM = (
    "RANDOM WEIGHTS (seed 0) — predictions are meaningless, transforms/categories of ResNet18_Weights.IMAGENET1K_V1"
)
VERIFIED = "torchvision ResNet50_Weights.IMAGENET1K_V2 from resnet50-11ad3fa6.pth (sha256 verified)"
UNVERIFIED = (
    "torchvision ResNet50_Weights.IMAGENET1K_V2 from resnet50-11ad3fa6.pth — UNVERIFIED: sha256 deadbeef does not "
    "match the published 11ad3fa6"
)
BAD_IMAGE = 'notes.jpg: not a supported image (JPEG, PNG): unrecognised data starting with "hello" (6 bytes)'

OUTPUT: dict[str, Any] = {
    "task_id": "5f0c",
    "status": "CompletedWithErrors",
    "models": ["resnet18", "resnet50"],
    "top_k": 3,
    "weights": {"resnet18": RANDOM, "resnet50": VERIFIED},
    "timings": {"queue_ms": 12.1, "preprocess_ms": 9.3, "inference_ms": 41.0, "total_ms": 70.2},
    "images": [
        {
            "index": 0,
            "name": "chelsea_cat.jpg",
            "error": None,
            "predictions": {
                "resnet18": {
                    "weights": RANDOM,
                    "inference_ms": 40.2,
                    "top_k": [
                        {"label": "tabby", "class_index": 281, "probability": 0.61},
                        {"label": "tiger cat", "class_index": 282, "probability": 0.2},
                        {"label": "Egyptian cat", "class_index": 285, "probability": 0.1},
                    ],
                },
                "resnet50": {
                    "weights": VERIFIED,
                    "inference_ms": 50.0,
                    "top_k": [{"label": "tiger cat", "class_index": 282, "probability": 0.5}],
                },
            },
        },
        {
            "index": 1,
            "name": "notes.jpg",
            "error": BAD_IMAGE,
            "predictions": {"resnet18": {"error": BAD_IMAGE}, "resnet50": {"error": BAD_IMAGE}},
        },
        {"index": 2, "name": "lost.jpg", "error": "blob missing", "predictions": {}},
    ],
    "error": None,
    "database_task_id": 17,
    "persist_error": None,
}


def rendered(draw: Any, *args: Any) -> str:
    console = Console(record=True, width=300)
    draw(console, *args)
    return console.export_text()


def test_a_completed_output_becomes_a_table_with_every_image_model_and_error() -> None:
    text = rendered(print_output, OUTPUT)
    lines = text.splitlines()
    cat18 = next(line for line in lines if "chelsea_cat.jpg" in line and "resnet18" in line)
    assert "tabby" in cat18 and "0.610" in cat18 and "tiger cat 0.200 · Egyptian cat 0.100" in cat18
    assert "RANDOM (seed 0)" in cat18
    cat50 = next(line for line in lines if "chelsea_cat.jpg" in line and "resnet50" in line)
    assert "IMAGENET1K_V2 (verified)" in cat50 and "0.500" in cat50
    bad = [line for line in lines if "notes.jpg" in line]
    assert len(bad) == 2 and all(BAD_IMAGE in line for line in bad)
    assert "RANDOM" not in " ".join(bad)  # a failed row used no weights
    assert any("lost.jpg" in line and "blob missing" in line for line in lines)
    assert "timings: queue 12 ms · preprocess 9 ms · inference 41 ms · total 70 ms" in text


def test_names_with_brackets_are_shown_as_written_not_read_as_markup() -> None:
    """A cell string is rich markup: "[v2]" vanished, and "x[/]y" raised MarkupError for a Completed task."""
    output = copy.deepcopy(OUTPUT)
    output["images"][0]["name"] = "sub [draft]/rocket [v2].jpg"
    output["images"][1]["name"] = "x[/]y.jpg"
    output["images"][1]["error"] = "cannot read [/bold] image"
    output["images"][1]["predictions"] = {}
    text = rendered(print_output, output)
    assert "sub [draft]/rocket [v2].jpg" in text and "x[/]y.jpg" in text and "cannot read [/bold] image" in text
    status = {"instanceId": "odd[/]id", "runtimeStatus": "Completed", "name": "classify_images", "output": output}
    assert "task odd[/]id: Completed" in rendered(print_status, status)


def test_the_summary_counts_a_task_that_ended_without_results() -> None:
    completed = {"runtimeStatus": "Completed", "output": copy.deepcopy(OUTPUT)}
    terminated = {"runtimeStatus": "Terminated", "output": "stopped by hand"}
    text = rendered(print_summary, {"aaaa": completed, "bbbb": terminated})
    assert "3 image(s) in 1 task(s): 2 failed; 1 more task(s) ended without results (above)" in text
    assert "task bbbb · Terminated (stopped by hand)" in text


def test_whole_task_errors_are_shown_under_the_table() -> None:
    output = {**copy.deepcopy(OUTPUT), "persist_error": "database unavailable"}
    assert "persist error: database unavailable" in rendered(print_output, output)


@pytest.mark.parametrize(
    ("label", "short", "warning"),
    [
        (RANDOM, "RANDOM (seed 0)", True),
        (VERIFIED, "IMAGENET1K_V2 (verified)", False),
        (UNVERIFIED, "IMAGENET1K_V2 UNVERIFIED", True),
        (
            "checkpoint /models/ft/model.pth (sha256 abcd1234), transforms/categories of X",
            "model.pth (sha256 abcd1234)",
            False,
        ),
        ("some future label that is rather long and says UNVERIFIED at its very end", None, True),
        (None, "", False),
    ],
)
def test_weights_labels_are_shortened_but_keep_warnings(label: Any, short: Any, warning: bool) -> None:
    text = short_weights(label)
    if short is not None:
        assert text.plain == short
    assert len(text.plain) <= 60
    assert ("UNVERIFIED" in text.plain or "RANDOM" in text.plain) == warning
    assert ("red" in str(text.style)) == warning


def test_failed_images_tells_a_clean_output_from_one_with_errors() -> None:
    clean = copy.deepcopy(OUTPUT)
    clean["status"] = "Completed"
    clean["images"] = clean["images"][:1]
    assert not failed_images(clean)
    assert failed_images(OUTPUT)
    assert failed_images(None)


def test_rows_follow_image_then_model_order() -> None:
    rows = output_rows(OUTPUT)
    assert [(r.image, r.model) for r in rows] == [
        ("chelsea_cat.jpg", "resnet18"),
        ("chelsea_cat.jpg", "resnet50"),
        ("notes.jpg", "resnet18"),
        ("notes.jpg", "resnet50"),
        ("lost.jpg", "—"),
    ]


@pytest.mark.parametrize(
    ("custom", "text"),
    [
        (None, "pending 0/? images"),
        ({"stage": "preprocessing", "images_total": 8, "images_done": 3}, "preprocessing 3/8 images"),
        (
            {"stage": "inference", "images_total": 8, "images_done": 8, "predictions_total": 16, "predictions_done": 4},
            "inference 4/16 predictions",
        ),
        ({"stage": "done", "images_total": 8, "images_done": 8, "status": "Completed"}, "done 8/8 images"),
    ],
)
def test_progress_reads_custom_status(custom: Any, text: str) -> None:
    assert describe_progress(custom).text == text


def test_timings_line_skips_what_is_missing() -> None:
    assert timings_line({"total_ms": 5.4, "queue_ms": None}) == "timings: total 5 ms"
    assert timings_line({}) == "timings: not reported"


def test_a_persisted_result_renders_as_the_same_table() -> None:
    stored = {
        "task_id": 17,
        "instance_id": "5f0c",
        "models": ["resnet18"],
        "status": "Completed",
        "submitted_at": "2026-01-01T00:00:00+00:00",
        "completed_at": "2026-01-01T00:00:01+00:00",
        "image_count": 1,
        "error": None,
        "results": [
            {
                "image_index": 0,
                "image_name": "chelsea_cat.jpg",
                "model": "resnet18",
                "weights": RANDOM,
                "label": "tabby",
                "class_index": 281,
                "confidence": 0.61,
                "top_k": [{"label": "tabby", "class_index": 281, "probability": 0.61}],
                "error": None,
            }
        ],
    }
    text = rendered(print_stored, stored)
    assert "TaskID 17" in text and "Completed" in text
    assert any(
        "chelsea_cat.jpg" in line and "tabby" in line and "RANDOM (seed 0)" in line for line in text.splitlines()
    )


def test_instances_table_shows_progress() -> None:
    console = Console(record=True, width=300)
    console.print(
        instances_table(
            [
                {
                    "instanceId": "abc",
                    "name": "classify_images",
                    "runtimeStatus": "Running",
                    "customStatus": {"stage": "preprocessing", "images_total": 2, "images_done": 1},
                    "createdTime": "t0",
                    "lastUpdatedTime": "t1",
                }
            ]
        )
    )
    line = next(line for line in console.export_text().splitlines() if "abc" in line)
    assert "Running" in line and "preprocessing 1/2 images" in line


def test_a_tasks_progress_counts_images_from_start_to_end_never_predictions_never_back() -> None:
    custom = {"images_total": 4}
    seen = [
        images_done({"runtimeStatus": "Pending"}, expected=4),
        images_done(
            {"runtimeStatus": "Running", "customStatus": {**custom, "stage": "preprocessing", "images_done": 3}}
        ),
        images_done(
            {
                "runtimeStatus": "Running",
                "customStatus": {
                    **custom,
                    "stage": "inference",
                    "images_done": 4,
                    "predictions_total": 8,
                    "predictions_done": 0,
                },
            }
        ),
        images_done(
            {
                "runtimeStatus": "Running",
                "customStatus": {
                    **custom,
                    "stage": "inference",
                    "images_done": 4,
                    "predictions_total": 8,
                    "predictions_done": 5,
                },
            }
        ),
        images_done({"runtimeStatus": "Completed", "customStatus": {**custom, "stage": "done", "images_done": 4}}),
    ]
    assert seen == [(0, 4), (0, 4), (0, 4), (2, 4), (4, 4)]
    assert images_done({"runtimeStatus": "Terminated", "output": "stopped"}) == (0, 0)  # never reported a total


def test_several_tasks_share_one_bar_counted_in_images() -> None:
    console = Console(record=True, width=300, force_terminal=False)
    running = {
        "runtimeStatus": "Running",
        "customStatus": {"stage": "inference", "images_total": 2, "predictions_total": 2, "predictions_done": 1},
    }
    with TaskProgress(console, {"a" * 32: 2, "b" * 32: 3}) as progress:
        progress.update("a" * 32, running)
        progress.update("b" * 32, {"runtimeStatus": "Pending"})
        progress.update("a" * 32, {"runtimeStatus": "Completed", "output": OUTPUT})
        progress.update("b" * 32, {"runtimeStatus": "Completed", "output": OUTPUT})
    lines = [line for line in console.export_text().splitlines() if line.startswith(("progress:", "task "))]
    assert lines == [
        "progress: inference · tasks 0/2 · 1/5 images",
        "progress: inference/pending · tasks 0/2 · 1/5 images",
        f"task {'a' * 32} ended: Completed · task CompletedWithErrors",
        "progress: pending · tasks 1/2 · 2/5 images",
        f"task {'b' * 32} ended: Completed · task CompletedWithErrors",
        "progress: done · tasks 2/2 · 5/5 images",
    ]


def test_several_tasks_make_one_summary_row_per_image_failures_first() -> None:
    clean = {**copy.deepcopy(OUTPUT), "status": "Completed", "images": [{**OUTPUT["images"][0], "name": "dog.jpg"}]}
    text = rendered(
        print_summary,
        {
            "a" * 32: {"runtimeStatus": "Completed", "output": clean},
            "b" * 32: {"runtimeStatus": "Completed", "output": OUTPUT},
            "c" * 32: {"runtimeStatus": "Terminated", "output": "not needed"},
        },
    )
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("task ")] == [
        f"task {'a' * 32} · Completed",
        f"task {'b' * 32} · CompletedWithErrors",
        f"task {'c' * 32} · Terminated (not needed)",
    ]
    assert "4 image(s) in 2 task(s): 2 failed" in text
    rows = [line for line in lines if ".jpg" in line]
    assert [next(n for n in ("notes", "lost", "chelsea_cat", "dog") if n in row) for row in rows] == [
        "notes",
        "lost",
        "dog",
        "chelsea_cat",
    ]  # failed images first, then in the order submitted
    assert BAD_IMAGE in rows[0] and rows[0].count(BAD_IMAGE) == 1 and "bbbbbbbb" in rows[0]
    assert "tabby 0.610" in rows[3] and "tiger cat 0.500" in rows[3] and "aaaaaaaa" in rows[2]
    assert "weights: resnet18 RANDOM (seed 0) · resnet50 IMAGENET1K_V2 (verified)" in text


@pytest.mark.parametrize(
    ("item", "outcome"),
    [
        ({"runtimeStatus": "Completed", "output": {"status": "CompletedWithErrors"}}, "CompletedWithErrors"),
        ({"runtimeStatus": "Failed", "output": "boom"}, "Failed"),
        ({"runtimeStatus": "Terminated", "output": "stop"}, "Terminated"),
        ({"runtimeStatus": "Running"}, ""),
    ],
)
def test_list_outcome_covers_orchestrations_that_ended_without_an_output(item: dict[str, Any], outcome: str) -> None:
    from classifier_cli.main import ended_as

    assert ended_as(item) == outcome
