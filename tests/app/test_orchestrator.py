"""The classification orchestrator, replayed through the SDK's own handle against synthetic histories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.durable_functions as df
import pytest

from contracts import (
    CLASSIFY_ORCHESTRATOR,
    INFERENCE_ACTIVITY,
    PERSIST_ACTIVITY,
    PREPROCESS_ACTIVITY,
    ClassificationRequest,
    ImageSource,
)
from orchestrators.classify import bp as classify_bp
from tests.app.replay import CALL_ACTIVITY_WITH_RETRY, ReplayDriver, ReplayRun

pytestmark = pytest.mark.unit


def orchestrator_handle() -> Callable[[Any], str]:
    app = df.DFApp()
    app.register_functions(classify_bp)
    (function,) = [f for f in app.get_functions() if f.get_trigger().type == "orchestrationTrigger"]
    assert function.get_trigger().orchestration == CLASSIFY_ORCHESTRATOR
    return function.get_user_function()


def make_request(images: int, models: list[str], batch_size: int = 8, attempts: int = 2) -> dict[str, Any]:
    return ClassificationRequest(
        task_id="task-1",
        models=models,
        images=[ImageSource(blob=f"uploads/task-1/{i}.jpg", name=f"photo{i}.jpg") for i in range(images)],
        top_k=3,
        submitted_at="2026-01-01T00:00:00+00:00",
        batch_size=batch_size,
        retry_attempts=attempts,
        retry_interval_ms=10,
    ).to_json()


def fake_preprocess(bad: set[int] = frozenset(), raising: set[int] = frozenset()) -> Callable[[dict], dict]:
    """A preprocessing activity over a batch: ``bad`` images fail alone, one in ``raising`` fails the batch."""

    def one(index: int, models: list[str]) -> dict[str, Any]:
        if index in bad:
            return {"image_index": index, "error": f"photo{index}.jpg: not an image"}
        return {
            "image_index": index,
            "tensors": {m: f"tensors/task-1/{index}-r256.u8" for m in models},
            "width": 640,
            "height": 480,
            "started_at": f"2026-01-01T00:00:0{index % 10}+00:00",
            "finished_at": f"2026-01-01T00:00:0{index % 10}.5+00:00",
            "duration_ms": 500.0,
        }

    def activity(payload: dict[str, Any]) -> dict[str, Any]:
        indexes = [image["image_index"] for image in payload["images"]]
        if raising & set(indexes):
            raise OSError("blob service timed out")
        return {"images": [one(index, payload["models"]) for index in indexes]}

    return activity


def preprocessed_indexes(result: ReplayRun) -> list[list[int]]:
    return [[image["image_index"] for image in p["images"]] for p in calls_to(result, PREPROCESS_ACTIVITY)]


def fake_inference(failing_model: str | None = None) -> Callable[[dict], dict]:
    def activity(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["model"] == failing_model:
            return {"model": payload["model"], "error": "weights for it cannot be loaded"}
        return {
            "model": payload["model"],
            "weights": f"{payload['model']} test weights",
            "results": [
                {
                    "image_index": item["image_index"],
                    "top_k": [
                        {"label": f"class{item['image_index']}", "class_index": item["image_index"], "probability": 0.9}
                    ],
                }
                for item in payload["items"]
            ],
            "started_at": "2026-01-01T00:00:10+00:00",
            "finished_at": "2026-01-01T00:00:11+00:00",
            "duration_ms": 1000.0,
        }

    return activity


def persist_ok(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload["instance_id"] == "task-1"
    return {"task_id": 42, "persisted_at": "2026-01-01T00:00:12+00:00"}


def run(request: dict[str, Any], **activities: Callable[[dict], Any]) -> ReplayRun:
    defaults = {
        PREPROCESS_ACTIVITY: fake_preprocess(),
        INFERENCE_ACTIVITY: fake_inference(),
        PERSIST_ACTIVITY: persist_ok,
    }
    defaults.update({name: fn for name, fn in activities.items()})
    return ReplayDriver(orchestrator_handle(), defaults).run("task-1", request)


def calls_to(result: ReplayRun, name: str) -> list[dict[str, Any]]:
    return [payload for called, payload in result.calls if called == name]


def test_first_episode_fans_out_one_retried_preprocess_per_batch_of_images() -> None:
    result = run(make_request(images=5, models=["resnet18"], batch_size=2))
    first = result.episodes[0]
    assert [a["functionName"] for a in first.actions] == [PREPROCESS_ACTIVITY] * 3
    assert all(a["actionType"] == CALL_ACTIVITY_WITH_RETRY for a in first.actions)
    assert first.custom_status == {"stage": "preprocessing", "images_total": 5, "images_done": 0}
    assert preprocessed_indexes(result) == [[0, 1], [2, 3], [4]]
    (payload, *_) = calls_to(result, PREPROCESS_ACTIVITY)
    assert payload["models"] == ["resnet18"] and payload["images"][1]["source"]["name"] == "photo1.jpg"
    preprocessing = [
        e.custom_status["images_done"] for e in result.episodes if e.custom_status["stage"] == "preprocessing"
    ]
    assert preprocessing == [0, 2, 4]  # images, not activities; the last batch moves straight on to inference
    assert result.error is None


def test_output_has_every_image_and_model_with_weights_and_timings() -> None:
    result = run(make_request(images=2, models=["resnet18", "resnet50"]))
    output = result.output
    assert output["status"] == "Completed"
    assert output["task_id"] == "task-1"
    assert output["database_task_id"] == 42
    assert output["weights"] == {"resnet18": "resnet18 test weights", "resnet50": "resnet50 test weights"}
    assert [image["name"] for image in output["images"]] == ["photo0.jpg", "photo1.jpg"]
    for image in output["images"]:
        assert set(image["predictions"]) == {"resnet18", "resnet50"}
        prediction = image["predictions"]["resnet50"]
        assert prediction["top_k"] == [
            {"label": f"class{image['index']}", "class_index": image["index"], "probability": 0.9}
        ]
        assert prediction["weights"] == "resnet50 test weights"
    timings = output["timings"]
    assert timings["submitted_at"] == "2026-01-01T00:00:00+00:00"
    assert timings["processing_started_at"] == "2026-01-01T00:00:00+00:00"
    assert timings["processing_finished_at"] == "2026-01-01T00:00:11+00:00"
    assert timings["queue_ms"] == 0.0 and timings["total_ms"] == 11000.0
    assert timings["inference_ms"] == 1000.0
    assert timings["preprocess_ms"] == 1500.0  # first preprocessing start to last finish
    assert timings["persisted_at"] == "2026-01-01T00:00:12+00:00"


def test_models_are_inferred_independently_in_configured_batches() -> None:
    result = run(make_request(images=5, models=["resnet18", "resnet50"], batch_size=2))
    batches = calls_to(result, INFERENCE_ACTIVITY)
    by_model: dict[str, list[list[int]]] = {}
    for payload in batches:
        by_model.setdefault(payload["model"], []).append([i["image_index"] for i in payload["items"]])
    assert by_model == {"resnet18": [[0, 1], [2, 3], [4]], "resnet50": [[0, 1], [2, 3], [4]]}
    statuses = [e.custom_status for e in result.episodes]
    inference = [s for s in statuses if s["stage"] == "inference"]
    assert all(s["predictions_total"] == 10 and s["images_done"] == 5 for s in inference)
    # one completion per episode here; the last one moves straight on to persisting
    assert [s["predictions_done"] for s in inference] == [0, 2, 4, 5, 7, 9]
    assert statuses[-1] == {"stage": "done", "images_total": 5, "images_done": 5, "status": "Completed"}


def test_bad_image_fails_only_that_image() -> None:
    result = run(make_request(images=3, models=["resnet18"]), **{PREPROCESS_ACTIVITY: fake_preprocess(bad={1})})
    output = result.output
    assert output["status"] == "CompletedWithErrors"
    assert output["images"][1]["error"] == "photo1.jpg: not an image"
    assert output["images"][1]["predictions"] == {"resnet18": {"error": "photo1.jpg: not an image"}}
    assert output["images"][0]["predictions"]["resnet18"]["top_k"][0]["label"] == "class0"
    inferred = [i["image_index"] for p in calls_to(result, INFERENCE_ACTIVITY) for i in p["items"]]
    assert inferred == [0, 2]


def test_an_image_that_keeps_failing_its_batch_is_retried_alone_and_fails_alone() -> None:
    """The batch [0, 1] fails on every attempt because of image 0 (a URL answering 503, say); tried alone,
    image 0 fails with the activity's error and image 1 is preprocessed."""
    result = run(
        make_request(images=3, models=["resnet18"], batch_size=2, attempts=3),
        **{PREPROCESS_ACTIVITY: fake_preprocess(raising={0})},
    )
    assert preprocessed_indexes(result) == [[0, 1], [2], [0, 1], [0, 1], [0], [1], [0], [0]]
    error = result.output["images"][0]["error"]
    assert error.startswith("Activity function 'preprocess_images' failed: OSError: blob service timed out")
    for image in result.output["images"][1:]:
        assert image["error"] is None and image["predictions"]["resnet18"]["top_k"]
    assert result.output["status"] == "CompletedWithErrors"
    done = [e.custom_status["images_done"] for e in result.episodes]
    assert done == sorted(done) and max(done) == 3  # never counts an image twice, nor goes back


def test_a_failing_single_image_batch_is_not_tried_again() -> None:
    result = run(
        make_request(images=2, models=["resnet18"], batch_size=1, attempts=2),
        **{PREPROCESS_ACTIVITY: fake_preprocess(raising={1})},
    )
    assert preprocessed_indexes(result) == [[0], [1], [1]]
    assert result.output["images"][1]["error"].startswith("Activity function 'preprocess_images' failed")
    assert result.output["images"][0]["error"] is None


def test_one_model_failing_does_not_fail_the_other() -> None:
    result = run(
        make_request(images=2, models=["resnet18", "resnet50"]),
        **{INFERENCE_ACTIVITY: fake_inference(failing_model="resnet50")},
    )
    for image in result.output["images"]:
        assert image["predictions"]["resnet50"] == {"error": "weights for it cannot be loaded"}
        assert image["predictions"]["resnet18"]["top_k"]
    assert result.output["status"] == "CompletedWithErrors"


def test_every_image_failing_gives_failed_status_with_reasons() -> None:
    result = run(make_request(images=2, models=["resnet18"]), **{PREPROCESS_ACTIVITY: fake_preprocess(bad={0, 1})})
    assert result.output["status"] == "Failed"
    assert "photo0.jpg: not an image" in result.output["error"]
    assert calls_to(result, INFERENCE_ACTIVITY) == []
    persisted = calls_to(result, PERSIST_ACTIVITY)
    assert len(persisted) == 1 and persisted[0]["status"] == "Failed"


def test_database_down_keeps_results_in_the_output() -> None:
    def persist_down(payload: dict[str, Any]) -> int:
        raise ConnectionError("database unreachable")

    result = run(make_request(images=1, models=["resnet18"], attempts=2), **{PERSIST_ACTIVITY: persist_down})
    assert len(calls_to(result, PERSIST_ACTIVITY)) == 2
    assert result.output["database_task_id"] is None
    assert "ConnectionError: database unreachable" in result.output["persist_error"]
    assert result.output["images"][0]["predictions"]["resnet18"]["top_k"]


def test_persisting_has_its_own_retries_for_a_database_that_is_resuming() -> None:
    """A paused serverless database refuses connections for up to a minute: persisting gets more attempts (and
    longer waits) than other activities, and the task is persisted once it answers."""
    calls = {"n": 0}

    def persist_resuming(payload: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= 4:
            raise ConnectionError("(40613) Database is not currently available")
        return {"task_id": 7, "persisted_at": "2026-01-01T00:01:00+00:00"}

    request = {**make_request(images=1, models=["resnet18"], attempts=2), "persist_attempts": 5}
    result = run({**request, "persist_interval_ms": 10_000}, **{PERSIST_ACTIVITY: persist_resuming})
    assert len(calls_to(result, PERSIST_ACTIVITY)) == 5
    assert result.output["database_task_id"] == 7 and result.output["persist_error"] is None
    assert result.retry_options[PERSIST_ACTIVITY] == {
        "firstRetryIntervalInMilliseconds": 10_000,
        "maxNumberOfAttempts": 5,
    }
    assert result.retry_options[PREPROCESS_ACTIVITY] == {
        "firstRetryIntervalInMilliseconds": 10,
        "maxNumberOfAttempts": 2,
    }


def test_persisted_record_has_a_row_per_image_and_model() -> None:
    result = run(
        make_request(images=2, models=["resnet18", "resnet50"]), **{PREPROCESS_ACTIVITY: fake_preprocess(bad={1})}
    )
    (record,) = calls_to(result, PERSIST_ACTIVITY)
    rows = [(r["image_index"], r["model"], r["label"], r["error"]) for r in record["results"]]
    assert rows == [
        (0, "resnet18", "class0", None),
        (0, "resnet50", "class0", None),
        (1, "resnet18", None, "photo1.jpg: not an image"),
        (1, "resnet50", None, "photo1.jpg: not an image"),
    ]
    assert record["image_count"] == 2 and record["models"] == ["resnet18", "resnet50"]


def test_a_restarted_instance_works_and_persists_under_its_own_id() -> None:
    """restartPostUri starts a new instance id with the old input, whose task_id names the old task."""
    restarted = {**make_request(images=2, models=["resnet18"]), "task_id": "finished-task"}
    result = run(restarted)  # the driver's instance id is "task-1"; persist_ok asserts the record's
    assert result.output["task_id"] == "task-1"
    for payload in calls_to(result, PREPROCESS_ACTIVITY) + calls_to(result, INFERENCE_ACTIVITY):
        assert payload["task_id"] == "task-1"


@pytest.mark.parametrize("images", [1, 7])
def test_replay_is_deterministic(images: int) -> None:
    first = run(make_request(images=images, models=["resnet18", "resnet50"], batch_size=3))
    second = run(make_request(images=images, models=["resnet18", "resnet50"], batch_size=3))
    assert first.output == second.output
    assert [e.actions for e in first.episodes] == [e.actions for e in second.episodes]
