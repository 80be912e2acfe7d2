"""Settings from the environment: defaults that work on a laptop, and a clear error for a bad value."""

from __future__ import annotations

import os

import pytest

from settings import SettingsError, settings_from

pytestmark = pytest.mark.unit


def test_defaults_work_without_any_variable() -> None:
    settings = settings_from({})
    assert settings.blob_connection_string == ""
    assert settings.sql_connection_string == "sqlite:///.localdata/results.db"
    assert settings.model_weights == {"resnet18": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"}
    assert settings.model_prewarm == ("resnet18", "resnet50")
    assert settings.inference_batch_size == 8 and settings.dynamic_batch_max_wait_ms == 5.0
    assert settings.torch_num_threads == (os.cpu_count() or 1)


def test_worker_processes_share_the_cores() -> None:
    cores = os.cpu_count() or 1
    assert settings_from({"FUNCTIONS_WORKER_PROCESS_COUNT": "2"}).torch_num_threads == max(1, cores // 2)
    assert settings_from({"FUNCTIONS_WORKER_PROCESS_COUNT": str(cores * 4)}).torch_num_threads == 1
    assert settings_from({"FUNCTIONS_WORKER_PROCESS_COUNT": "2", "TORCH_NUM_THREADS": "3"}).torch_num_threads == 3


def test_compute_streams_unset_or_zero_leave_the_choice_to_the_device() -> None:
    assert settings_from({}).compute_streams is None
    assert settings_from({"COMPUTE_STREAMS": "0"}).compute_streams is None
    assert settings_from({"COMPUTE_STREAMS": "2"}).compute_streams == 2


def test_values_are_parsed() -> None:
    settings = settings_from(
        {
            "INFERENCE_BATCH_SIZE": "16",
            "DYNAMIC_BATCH_MAX_WAIT_MS": "0",
            "MODEL_PREWARM": "ResNet50",
            "URL_ALLOWED_HOSTS": "A.example, b.example",
            "MODEL_WEIGHTS_RESNET18": "random:3",
        }
    )
    assert settings.inference_batch_size == 16 and settings.dynamic_batch_max_wait_ms == 0.0
    assert settings.model_prewarm == ("resnet50",)
    assert settings.url_allowed_hosts == frozenset({"a.example", "b.example"})
    assert settings.weights_spec("resnet18") == "random:3"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"INFERENCE_BATCH_SIZE": "eight"}, "INFERENCE_BATCH_SIZE='eight' is not a valid int"),
        ({"INFERENCE_BATCH_SIZE": "0"}, "INFERENCE_BATCH_SIZE=0 must be at least 1"),
        ({"DYNAMIC_BATCH_MAX_WAIT_MS": "-1"}, "DYNAMIC_BATCH_MAX_WAIT_MS=-1 must be at least 0"),
        ({"SYNC_WAIT_MAX_SECONDS": "nan"}, "SYNC_WAIT_MAX_SECONDS=nan must be at least 0"),
        ({"INFERENCE_PRECISION": "fp16"}, "INFERENCE_PRECISION='fp16'"),
        ({"MODEL_PREWARM": "resnet18,vgg"}, "MODEL_PREWARM"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words.replace("(", r"\(")):
        settings_from(env)
