"""The three activities with their real parts: local blob folder, SQLite, torchvision models.

The weights are seeded checkpoints under torchvision's canonical names in a temporary TORCH_HOME, loaded
through torchvision's own weights API, so the reference below is what a user of torchvision would compute.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import services
from activities import inference as inference_activity
from activities import preprocessing, serving
from activities.checkpoints import fetch_checkpoint, local_copy
from activities.persist import persist
from activities.preprocess import preprocess_images
from activities.preprocessing import preprocess
from activities.serving import compute_streams, infer
from contracts import (
    BatchItem,
    ClassificationRequest,
    ImageSource,
    ImageToPreprocess,
    InferenceInput,
    PreprocessBatchInput,
    PreprocessBatchOutput,
    PreprocessInput,
    ResultRecord,
    TaskRecord,
)
from inference import torch_threads
from inference.torch_threads import NARROW_COMPUTE_THREAD
from orchestrators.workflow import BatchOutcome, build_results, plan_batches
from settings import get_settings, settings_from
from storage.results import load_task
from tests.app.test_orchestrator import make_request
from tests.fixtures.azurite import Azurite
from tests.fixtures.checkpoints import reference_logits

pytestmark = pytest.mark.unit

TASK = "activities-task"


@pytest.fixture()
def app_env(tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at a temporary blob folder and database; per-process caches reset around it."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("BLOB_LOCAL_ROOT", str(tmp_path / "blobs"))
    monkeypatch.setenv("SQL_CONNECTION_STRING", f"sqlite:///{tmp_path / 'results.db'}")
    monkeypatch.setenv("INFERENCE_PRECISION", "fp32")
    caches = (
        get_settings,
        services.blob_store,
        services.database,
        serving.process_model_cache,
        preprocessing.preprocessing_weights,
    )
    for cache in caches:
        cache.cache_clear()
    yield tmp_path
    for cache in caches:
        cache.cache_clear()


def upload(photo: Path) -> ImageSource:
    name = f"uploads/{TASK}/{photo.name}"
    services.blob_store().put(name, photo.read_bytes(), "image/jpeg")
    return ImageSource(blob=name, name=photo.name)


@pytest.mark.slow  # two real models over every photo
def test_pipeline_matches_torchvision_reference(app_env: Path, shared_images_dir: Path) -> None:
    photos = sorted(shared_images_dir.glob("*.jpg"))
    sources = [upload(p) for p in photos]
    prepared = [
        preprocess(PreprocessInput(TASK, i, source, ["resnet18", "resnet50"])) for i, source in enumerate(sources)
    ]
    for output, photo in zip(prepared, photos, strict=True):
        assert output.error is None
        assert (output.width, output.height) == Image.open(photo).size
        # ResNet18 V1 resizes to 256, ResNet50 V2 to 232: two tensors per image
        assert output.tensors["resnet18"] != output.tensors["resnet50"]

    for model, weights_name in (("resnet18", "IMAGENET1K_V1"), ("resnet50", "IMAGENET1K_V2")):
        items = [BatchItem(p.image_index, p.tensors[model]) for p in prepared]
        result = infer(InferenceInput(TASK, model, 5, items))
        assert result.error is None
        assert weights_name in (result.weights or "") and "UNVERIFIED" in (result.weights or "")
        assert (result.weights or "").endswith("; run in fp32 on cpu")  # INFERENCE_PRECISION=fp32 here
        expected = torch.softmax(reference_logits(model, weights_name, photos), dim=1).topk(5, dim=1)
        for got, want_p, want_i in zip(result.results, expected.values, expected.indices, strict=True):
            assert [p.class_index for p in got.top_k] == want_i.tolist()
            assert [p.probability for p in got.top_k] == pytest.approx(want_p.tolist(), abs=1e-4)
        # photos are not all classified alike: the checkpoints are discriminative
        assert len({r.top_k[0].class_index for r in result.results}) > 1


@pytest.mark.slow  # loads both real models
def test_batched_equals_one_by_one(app_env: Path, shared_images_dir: Path) -> None:
    photos = sorted(shared_images_dir.glob("*.jpg"))[:3]
    prepared = [preprocess(PreprocessInput(TASK, i, upload(p), ["resnet18"])) for i, p in enumerate(photos)]
    items = [BatchItem(p.image_index, p.tensors["resnet18"]) for p in prepared]
    batched = infer(InferenceInput(TASK, "resnet18", 3, items)).results
    single = [infer(InferenceInput(TASK, "resnet18", 3, [item])).results[0] for item in items]
    for b, s in zip(batched, single, strict=True):
        assert b.image_index == s.image_index
        assert [p.class_index for p in b.top_k] == [p.class_index for p in s.top_k]
        assert [p.probability for p in b.top_k] == pytest.approx([p.probability for p in s.top_k], abs=1e-5)


def test_bad_images_fail_only_themselves_with_a_reason(app_env: Path) -> None:
    store = services.blob_store()
    store.put("uploads/bad/notes.jpg", b"this is a text file, not a photo")
    not_image = preprocess(PreprocessInput(TASK, 0, ImageSource(blob="uploads/bad/notes.jpg"), ["resnet18"]))
    assert not_image.tensors == {} and "notes.jpg" in (not_image.error or "")
    assert "not a supported image" in (not_image.error or "")
    missing = preprocess(PreprocessInput(TASK, 1, ImageSource(blob="uploads/bad/gone.jpg"), ["resnet18"]))
    assert "uploads/bad/gone.jpg" in (missing.error or "") and missing.tensors == {}


def generated_photo(name: str, size: tuple[int, int]) -> ImageSource:
    """A JPEG uploaded as a client would; made here so that the test needs no shared photos."""
    encoded = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(encoded, "JPEG")
    services.blob_store().put(f"uploads/{TASK}/{name}", encoded.getvalue(), "image/jpeg")
    return ImageSource(blob=f"uploads/{TASK}/{name}", name=name)


def test_a_batch_preprocesses_its_images_in_parallel_and_fails_a_bad_one_alone(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The activity as the worker invokes it (JSON in and out). Each image waits at a barrier for the others
    before it is fetched: one image at a time would break the barrier instead of passing it."""
    sizes = [(320, 240), (300, 400)]
    services.blob_store().put("uploads/bad/notes.jpg", b"this is a text file, not a photo")
    first, second = (generated_photo(f"{i}.jpg", size) for i, size in enumerate(sizes))
    sources = [first, ImageSource(blob="uploads/bad/notes.jpg", name="notes.jpg"), second]
    everyone = threading.Barrier(len(sources), timeout=10)
    real_read = preprocessing.read_image_bytes

    def read_together(*args: object) -> bytes:
        everyone.wait()
        return real_read(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(preprocessing, "read_image_bytes", read_together)
    request = PreprocessBatchInput(TASK, ["resnet18"], [ImageToPreprocess(i + 3, s) for i, s in enumerate(sources)])
    output = PreprocessBatchOutput.from_json(preprocess_images(request.to_json()))
    assert [image.image_index for image in output.images] == [3, 4, 5]
    good = [output.images[0], output.images[2]]
    assert all(image.error is None for image in good)
    assert [(image.width, image.height) for image in good] == sizes
    for image in good:
        assert services.blob_store().exists(image.tensors["resnet18"])
    assert output.images[1].tensors == {} and "notes.jpg" in (output.images[1].error or "")


def test_a_storage_failure_fails_the_batch_once_its_other_images_are_done(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised for the orchestrator to retry the batch, but only after every image finished: a retry must not
    race this attempt's writes, nor the persist that may follow them."""
    sources = [generated_photo(f"{i}.jpg", (320, 240)) for i in range(2)]
    store = services.blob_store()
    real_put, real_read = store.put, preprocessing.read_image_bytes

    def failing_put(name: str, data: bytes, content_type: str | None = None) -> None:
        if "/0-" in name:
            raise OSError("blob service timed out")
        real_put(name, data, content_type)

    def slow_second(source: ImageSource, *args: object) -> bytes:
        if source == sources[1]:
            time.sleep(0.3)  # still running when the first image has failed
        return real_read(source, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put", failing_put)
    monkeypatch.setattr(preprocessing, "read_image_bytes", slow_second)
    request = PreprocessBatchInput(TASK, ["resnet18"], [ImageToPreprocess(i, s) for i, s in enumerate(sources)])
    with pytest.raises(OSError, match="blob service timed out"):
        preprocess_images(request.to_json())
    assert [blob.name for blob in store.list_blobs(f"tensors/{TASK}/")] == [f"tensors/{TASK}/1-r256-c224-bilinear.u8"]


@pytest.mark.parametrize("size", [(4000, 1), (1, 40000), (2000, 3)])
def test_extreme_aspect_ratios_fail_the_image_before_the_resize(app_env: Path, size: tuple[int, int]) -> None:
    """A tiny PNG whose resize to 256 on the short side would need gigabytes is refused, not resized."""
    encoded = io.BytesIO()
    Image.new("RGB", size).save(encoded, "PNG")
    services.blob_store().put("uploads/bad/strip.png", encoded.getvalue())
    strip = preprocess(PreprocessInput(TASK, 0, ImageSource(blob="uploads/bad/strip.png"), ["resnet18"]))
    assert strip.tensors == {} and "extreme aspect ratio" in (strip.error or "")
    assert "MAX_IMAGE_PIXELS" in (strip.error or "")


def test_a_worker_decodes_at_most_max_concurrent_decodes_images_at_once(
    app_env: Path, shared_images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_DECODE_BYTES bounds one image; the slots bound how many a worker holds while it runs many activities."""
    monkeypatch.setenv("MAX_CONCURRENT_DECODES", "1")
    get_settings.cache_clear()
    source = upload(sorted(shared_images_dir.glob("*.jpg"))[0])
    slot = preprocessing.decode_slots(1)
    with ThreadPoolExecutor(1) as pool:
        with slot:  # another activity is decoding: this one must wait for the slot, not decode beside it
            waiting = pool.submit(preprocess, PreprocessInput(TASK, 0, source, ["resnet18"]))
            with pytest.raises(TimeoutError):
                waiting.result(timeout=0.5)
        prepared = waiting.result(timeout=30)
    assert prepared.error is None and prepared.width and set(prepared.tensors) == {"resnet18"}
    assert slot.acquire(blocking=False), "the slot was given back"
    slot.release()


def test_missing_weights_fail_the_model_with_instructions(
    app_env: Path, shared_images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET18", f"file:{app_env / 'nowhere.pth'}")
    get_settings.cache_clear()
    prepared = preprocess(PreprocessInput(TASK, 0, upload(sorted(shared_images_dir.glob("*.jpg"))[0]), ["resnet18"]))
    assert prepared.error is None  # preprocessing does not need the weights file
    result = infer(InferenceInput(TASK, "resnet18", 5, [BatchItem(0, prepared.tensors["resnet18"])]))
    assert result.results == []
    assert "nowhere.pth" in (result.error or "") and "MODEL_WEIGHTS_RESNET18" in (result.error or "")


@pytest.mark.parametrize("spec", ["IMAGENET1K_V9", "blob:models"])
def test_a_malformed_weights_setting_fails_only_its_model(
    app_env: Path,
    shared_images_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    spec: str,
) -> None:
    """A typo in one model's weights setting: the image is still preprocessed and classified for the other
    model, and the mistyped model's records say why, without a retry (it would not mend a setting)."""
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET50", spec)
    get_settings.cache_clear()
    photo = sorted(shared_images_dir.glob("*.jpg"))[0]
    prepared = preprocess(PreprocessInput(TASK, 0, upload(photo), ["resnet18", "resnet50"]))
    assert prepared.error is None and list(prepared.tensors) == ["resnet18"]
    assert prepared.model_errors["resnet50"].startswith("resnet50: ") and spec in prepared.model_errors["resnet50"]
    assert preprocess(PreprocessInput(TASK, 1, upload(photo), ["resnet50"])).model_errors.keys() == {"resnet50"}

    request = ClassificationRequest.from_json(make_request(images=1, models=["resnet18", "resnet50"]))
    inference = {
        model: [BatchOutcome(items, infer(InferenceInput(TASK, model, 3, items)))]
        for model in request.models
        for items in plan_batches([prepared], model, 8)
    }
    assert list(inference) == ["resnet18"]  # no inference activity for a model without tensors
    by_model = {record.model: record for record in build_results(request, {0: prepared}, inference)}
    assert by_model["resnet18"].label is not None
    assert by_model["resnet50"].label is None and by_model["resnet50"].error == prepared.model_errors["resnet50"]

    unusable = infer(InferenceInput(TASK, "resnet50", 3, [BatchItem(0, prepared.tensors["resnet18"])]))
    assert unusable.results == [] and spec in (unusable.error or "")
    with caplog.at_level("INFO", logger=serving.log.name):
        serving.prewarm(("resnet50",))
    (said,) = [r for r in caplog.records if r.name == serving.log.name]
    assert said.levelname == "WARNING" and said.exc_info is None and spec in said.getMessage()


def test_prewarm_without_weights_is_one_line_of_advice_per_model(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET18", f"file:{app_env / 'nowhere.pth'}")
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET50", "random:3")
    get_settings.cache_clear()
    with caplog.at_level("INFO", logger=serving.log.name):
        serving.prewarm(("resnet18", "resnet50"))
    records = [r for r in caplog.records if r.name == serving.log.name]
    missing, loaded = records
    assert missing.levelname == "WARNING" and missing.exc_info is None
    assert "\n" not in missing.getMessage()
    assert missing.getMessage().startswith("resnet18 is not loaded: checkpoint ")
    assert "MODEL_WEIGHTS_RESNET18=file:" in missing.getMessage()
    assert loaded.getMessage().startswith("prewarmed resnet50 with RANDOM WEIGHTS (seed 3)")


@pytest.mark.parametrize(
    ("role", "prewarms", "reports"),
    [("dispatcher", False, True), ("worker", True, False), ("standalone", True, True), (None, True, True)],
)
def test_the_local_hosts_dispatcher_reports_weights_once_and_its_workers_load_them(
    app_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    role: str | None,
    prewarms: bool,
    reports: bool,
) -> None:
    """The dispatcher says what the weights are (or what is missing) and loads nothing; workers load quietly."""
    monkeypatch.setenv("MODEL_PREWARM", "resnet18,resnet50")
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET18", "random:5")
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET50", f"file:{app_env / 'nowhere.pth'}")
    if role is not None:
        monkeypatch.setenv("DURABLE_HOST_ROLE", role)
    get_settings.cache_clear()
    try:
        with caplog.at_level("INFO"):
            inference_activity.start_prewarm()
            for thread in threading.enumerate():
                if thread.name == inference_activity.PREWARM_THREAD:
                    thread.join(timeout=60)
    finally:
        for name in inference_activity.WEIGHTS_LOGGERS:
            logging.getLogger(name).filters.clear()
    assert bool(serving.model_cache().loaded()) is prewarms
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if reports:
        assert any(m.startswith("resnet18 uses RANDOM WEIGHTS (seed 5)") for m in said), said
        assert [m for m in said if "is not loaded" in m] == [said[-1]]
        assert said[-1].startswith("resnet50 is not loaded: checkpoint ") and "MODEL_WEIGHTS_RESNET50" in said[-1]
    else:
        assert said == []
        assert not [r for r in caplog.records if r.getMessage().startswith("loaded ")]  # nor the cache's INFO


@pytest.mark.parametrize(
    ("line", "logger", "level", "message"),
    [
        ('["inference.weights", 30, "resnet18: random"]', "inference.weights", logging.WARNING, "resnet18: random"),
        ("plain text a library printed", "activities.inference", logging.INFO, "plain text a library printed"),
        ('"a JSON string"', "activities.inference", logging.INFO, '"a JSON string"'),
        ('[1, 20, "not a logger name"]', "activities.inference", logging.INFO, '[1, 20, "not a logger name"]'),
        ('["a.b", "INFO", "x"]', "activities.inference", logging.INFO, '["a.b", "INFO", "x"]'),
        ('["a.b", true, "x"]', "activities.inference", logging.INFO, '["a.b", true, "x"]'),
    ],
)
def test_the_dispatcher_relays_the_weights_reports_records_and_any_other_line_as_text(
    caplog: pytest.LogCaptureFixture, line: str, logger: str, level: int, message: str
) -> None:
    """The child's stdout: records go out under their own logger and level; any other line, whatever it parses
    as, is logged as it is instead of failing the host's start."""
    with caplog.at_level("INFO"):
        inference_activity._relay(line)
    (record,) = caplog.records
    assert (record.name, record.levelno, record.getMessage()) == (logger, level, message)


def _record() -> TaskRecord:
    return TaskRecord(
        instance_id=TASK,
        models=["resnet18"],
        status="Completed",
        submitted_at="2026-01-01T00:00:00+00:00",
        processing_started_at="2026-01-01T00:00:01+00:00",
        processing_finished_at="2026-01-01T00:00:02+00:00",
        completed_at="2026-01-01T00:00:03+00:00",
        image_count=1,
        error=None,
        results=[
            ResultRecord(
                0,
                "cat.jpg",
                "resnet18",
                "w",
                "tabby",
                281,
                0.5,
                [],
                "2026-01-01T00:00:01+00:00",
                "2026-01-01T00:00:02+00:00",
                12.5,
            )
        ],
    )


def test_persist_is_idempotent_and_drops_the_task_tensors_and_uploads(app_env: Path) -> None:
    store = services.blob_store()
    store.put(f"tensors/{TASK}/0-r256-c224-bilinear.u8", b"tensor bytes")
    store.put(f"uploads/{TASK}/0.jpg", b"uploaded image")
    store.put("uploads/other-task/0.jpg", b"another task's image")
    record = _record()
    first = persist(record).task_id
    assert persist(record).task_id == first  # a replayed or retried persist rewrites the same rows
    stored = load_task(services.database(), TASK)
    assert stored is not None and stored.task_id == first
    assert [r.label for r in stored.record.results] == ["tabby"]
    assert not store.exists(f"tensors/{TASK}/0-r256-c224-bilinear.u8")
    assert not store.exists(f"uploads/{TASK}/0.jpg")
    assert store.exists("uploads/other-task/0.jpg")


def test_a_clean_up_that_fails_after_the_save_is_no_persist_failure(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows are committed before the temporary blobs go: a storage outage then (injected here) leaves
    the blobs to the sweep and the task persisted, instead of an output saying its result was lost."""
    store = services.blob_store()
    store.put(f"uploads/{TASK}/0.jpg", b"uploaded image")

    def outage(prefix: str) -> int:
        raise OSError(f"storage unreachable while deleting {prefix}")

    monkeypatch.setattr(store, "delete_prefix", outage)
    with caplog.at_level(logging.WARNING):
        task_id = persist(_record()).task_id
    stored = load_task(services.database(), TASK)
    assert stored is not None and stored.task_id == task_id
    assert store.exists(f"uploads/{TASK}/0.jpg")
    assert any("the sweep will" in r.getMessage() for r in caplog.records)


def test_concurrent_single_image_activities_share_forward_passes(
    app_env: Path, shared_images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMIC_BATCH_MAX_WAIT_MS", "200")
    get_settings.cache_clear()
    photos = sorted(shared_images_dir.glob("*.jpg"))
    prepared = [preprocess(PreprocessInput(TASK, i, upload(p), ["resnet18"])) for i, p in enumerate(photos)]
    requests = [
        InferenceInput(TASK, "resnet18", 3, [BatchItem(p.image_index, p.tensors["resnet18"])]) for p in prepared
    ]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(infer, requests))
    model = serving.model_cache().get("resnet18", get_settings().weights_spec("resnet18"))
    stats = serving.batcher_for(model).stats()
    assert stats.images == len(requests) and stats.batches < len(requests)
    monkeypatch.setenv("DYNAMIC_BATCH_MAX_WAIT_MS", "0")
    get_settings.cache_clear()
    for request, result in zip(requests, together, strict=True):
        alone = infer(request).results[0]
        assert result.results[0].image_index == alone.image_index
        assert [p.class_index for p in result.results[0].top_k] == [p.class_index for p in alone.top_k]
        assert [p.probability for p in result.results[0].top_k] == pytest.approx(
            [p.probability for p in alone.top_k], abs=1e-5
        )


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _narrow_compute_threads() -> int:
    return sum(t.name.startswith(NARROW_COMPUTE_THREAD) for t in threading.enumerate())


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2, reason="needs Linux, 2+ cores")
def test_only_the_compute_thread_gets_an_openmp_team(
    app_env: Path, shared_images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the compute thread may run torch on several cores (inference.torch_threads): an activity thread
    or a narrow compute thread with a team makes libgomp throttle, and a paused forward pass takes 1.6-1.9x
    as long."""
    monkeypatch.setenv("INFERENCE_BATCH_SIZE", "1")  # every request a batch of its own: passes overlap
    monkeypatch.setenv("COMPUTE_STREAMS", "2")
    get_settings.cache_clear()
    photo = sorted(shared_images_dir.glob("*.jpg"))[0]

    def both_activities(index: int) -> int:
        prepared = preprocess(PreprocessInput(TASK, index, upload(photo), ["resnet18"]))
        infer(InferenceInput(TASK, "resnet18", 3, [BatchItem(index, prepared.tensors["resnet18"])]))
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as warm_up:  # model, batcher and the compute thread's team exist after it
        assert warm_up.submit(both_activities, 0).result() == 1
    narrow_executor, narrow_passes = torch_threads._narrow_threads(), []
    submit = narrow_executor.submit
    monkeypatch.setattr(narrow_executor, "submit", lambda fn: (narrow_passes.append(fn), submit(fn))[1])
    before, narrow_before = _os_threads(), _narrow_compute_threads()
    with ThreadPoolExecutor(4) as pool:  # threads that live on after their activities, as the worker's do
        assert list(pool.map(both_activities, range(1, 16))) == [1] * 15
        narrow = _narrow_compute_threads() - narrow_before
        assert _os_threads() - before == 4 + narrow  # the pool's own threads, narrow ones, and no team
    assert narrow_passes  # overlapping passes did run on narrow threads


def test_a_closed_batcher_is_replaced_for_the_next_request(app_env: Path) -> None:
    """A failure that closes a model's batcher must not fail that model's requests until the worker restarts."""
    model = serving.load("resnet18")
    closed = serving.batcher_for(model)
    closed.close()
    replacement = serving.batcher_for(model)
    try:
        assert replacement is not closed and not replacement.closed
        assert serving.batcher_for(model) is replacement
    finally:
        replacement.close()


def test_compute_streams_default_to_one_per_thread_on_a_cpu_and_one_on_a_gpu() -> None:
    cpu, gpu = (SimpleNamespace(device=torch.device(kind)) for kind in ("cpu", "cuda"))
    default = settings_from({"TORCH_NUM_THREADS": "3"})
    assert compute_streams(cpu, default) == 3 and compute_streams(gpu, default) == 1  # type: ignore[arg-type]
    chosen = settings_from({"TORCH_NUM_THREADS": "3", "COMPUTE_STREAMS": "2"})
    assert compute_streams(cpu, chosen) == 2 and compute_streams(gpu, chosen) == 2  # type: ignore[arg-type]


def test_activities_against_azure_blob_storage(
    app_env: Path, azurite: Azurite, shared_images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same activities with the Azure SDK store, against a real Azurite."""
    monkeypatch.setenv("BLOB_CONNECTION_STRING", azurite.connection_string)
    get_settings.cache_clear()
    services.blob_store.cache_clear()
    photo = sorted(shared_images_dir.glob("*.jpg"))[0]
    prepared = preprocess(PreprocessInput(TASK, 0, upload(photo), ["resnet18"]))
    assert prepared.error is None
    tensor = prepared.tensors["resnet18"]
    assert services.blob_store().exists(tensor)
    result = infer(InferenceInput(TASK, "resnet18", 3, [BatchItem(0, tensor)]))
    assert result.error is None and len(result.results[0].top_k) == 3
    record = TaskRecord(
        instance_id=TASK,
        models=["resnet18"],
        status="Completed",
        submitted_at="2026-01-01T00:00:00+00:00",
        processing_started_at=None,
        processing_finished_at=None,
        completed_at="2026-01-01T00:00:03+00:00",
        image_count=1,
        error=None,
        results=[],
    )
    persist(record)
    assert not services.blob_store().exists(tensor)


def test_checkpoint_named_as_a_blob_is_fetched_once_and_labelled(
    app_env: Path, torch_home: Path, shared_images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = (torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").read_bytes()
    services.blob_store().put("models/finetuned-r18.pth", checkpoint)
    monkeypatch.setenv("MODEL_WEIGHTS_RESNET18", "blob:models/finetuned-r18.pth#IMAGENET1K_V1")
    monkeypatch.setenv("CHECKPOINT_CACHE_DIR", str(app_env / "checkpoints"))
    get_settings.cache_clear()
    photo = sorted(shared_images_dir.glob("*.jpg"))[0]
    prepared = preprocess(PreprocessInput(TASK, 0, upload(photo), ["resnet18"]))
    result = infer(InferenceInput(TASK, "resnet18", 3, [BatchItem(0, prepared.tensors["resnet18"])]))
    local = app_env / "checkpoints" / "models" / "finetuned-r18.pth"
    assert result.error is None and local.read_bytes() == checkpoint
    assert f"checkpoint {local}" in (result.weights or "")
    expected = torch.softmax(reference_logits("resnet18", "IMAGENET1K_V1", [photo]), dim=1).topk(3).indices[0]
    assert [p.class_index for p in result.results[0].top_k] == expected.tolist()

    monkeypatch.setenv("MODEL_WEIGHTS_RESNET18", "blob:models/missing.pth")
    get_settings.cache_clear()
    missing = infer(InferenceInput(TASK, "resnet18", 3, [BatchItem(0, prepared.tensors["resnet18"])]))
    assert "models/missing.pth" in (missing.error or "") and "MODEL_WEIGHTS_" in (missing.error or "")


def test_a_checkpoint_copy_that_cannot_be_written_leaves_no_partial_file(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry of a copy that fails (a full disk; here a folder where the file must go) would otherwise
    leave a temporary file of the checkpoint's size behind."""
    store = services.blob_store()
    store.put("models/r.pth", b"checkpoint bytes" * 1000)
    monkeypatch.setenv("CHECKPOINT_CACHE_DIR", str(app_env / "checkpoints"))
    get_settings.cache_clear()
    target = local_copy("models/r.pth")
    target.mkdir(parents=True)
    for _ in range(2):
        with pytest.raises(OSError):
            fetch_checkpoint("blob:models/r.pth", store)
    assert [p.name for p in target.parent.iterdir() if p.name.startswith("tmp")] == []


def test_concurrent_first_uses_fetch_a_checkpoint_blob_once(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weights report and the workers' prewarm start at once: one of them reads the blob, the others wait
    for its local copy (a blob store that takes a while, counting its reads)."""
    store = services.blob_store()
    store.put("models/big.pth", b"checkpoint bytes" * 1000)
    monkeypatch.setenv("CHECKPOINT_CACHE_DIR", str(app_env / "checkpoints"))
    get_settings.cache_clear()
    reads: list[str] = []
    real_get = store.get

    def slow_get(name: str) -> bytes:
        reads.append(name)
        time.sleep(0.3)
        return real_get(name)

    monkeypatch.setattr(store, "get", slow_get)
    start = threading.Barrier(4)

    def first_use() -> str:
        start.wait()
        return fetch_checkpoint("blob:models/big.pth", store)

    with ThreadPoolExecutor(4) as pool:
        specs = set(pool.map(lambda _: first_use(), range(4)))
    assert reads == ["models/big.pth"]
    assert specs == {f"file:{app_env / 'checkpoints' / 'models' / 'big.pth'}"}
