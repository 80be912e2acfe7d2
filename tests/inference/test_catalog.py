from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inference.catalog import DEFAULT_WEIGHTS, NUM_CLASSES, SUPPORTED_MODELS, normalise_model_name, weights_env_var
from inference.errors import UnknownModelError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "name,expected", [("ResNet18", "resnet18"), ("RESNET50", "resnet50"), (" resnet50 ", "resnet50")]
)
def test_normalise_model_name_is_case_insensitive(name: str, expected: str) -> None:
    assert normalise_model_name(name) == expected


@pytest.mark.parametrize("name", ["resnet101", "", "vgg16"])
def test_unknown_model_lists_supported_names(name: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        normalise_model_name(name)
    assert isinstance(info.value, ValueError)
    assert "resnet18" in str(info.value) and "resnet50" in str(info.value)


def test_defaults_cover_every_model() -> None:
    assert SUPPORTED_MODELS == ("resnet18", "resnet50")
    assert DEFAULT_WEIGHTS == {"resnet18": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"}
    assert NUM_CLASSES == 1000
    assert weights_env_var("ResNet50") == "MODEL_WEIGHTS_RESNET50"


def test_catalog_import_does_not_import_torch() -> None:
    code = "import sys, inference, inference.catalog, inference.errors; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "False"
