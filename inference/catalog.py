"""Names of the supported models and their default weights, and the names of the precisions.

Torch-free on purpose: the HTTP layer validates requests with this module and must import fast.
"""

from __future__ import annotations

from typing import Literal, TypeIs, get_args

from inference.errors import UnknownModelError

SUPPORTED_MODELS: tuple[str, ...] = ("resnet18", "resnet50")

#: torchvision enum member used when a model's weights are not configured. ResNet50 defaults to
#: IMAGENET1K_V2 (torchvision's DEFAULT, acc@1 80.9 vs 76.1 for V1); it resizes to 232, not 256.
DEFAULT_WEIGHTS: dict[str, str] = {"resnet18": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"}

#: Numeric precision of the forward pass (see :mod:`inference.precision`); "auto" picks per device.
Precision = Literal["fp32", "bf16", "auto"]
ResolvedPrecision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def is_precision(value: str) -> TypeIs[Precision]:
    return value in PRECISIONS


#: Default of ``MAX_DECODE_BYTES`` (see :mod:`inference.memory_budget`): room for the worst image within the
#: default ``MAX_IMAGE_PIXELS`` (a 40 MP CMYK JPEG, RGBA PNG or EXIF-rotated RGB photo: 320 MB at the peak).
DEFAULT_MAX_DECODE_BYTES = 384 * 1024 * 1024

#: ImageNet-1K classes: every supported checkpoint must end in a 1000-way ``fc`` layer.
NUM_CLASSES = 1000


def normalise_model_name(name: str) -> str:
    """Return the canonical lower-case model name ("ResNet18" -> "resnet18").

    Raises :class:`UnknownModelError` (a ``ValueError``) listing the supported names.
    """
    canonical = name.strip().lower() if isinstance(name, str) else ""
    if canonical not in SUPPORTED_MODELS:
        shown = repr(name) if len(repr(name)) <= 60 else f"{repr(name)[:40]}..."  # never a client's megabyte back
        raise UnknownModelError(f"unknown model {shown}: supported models are {', '.join(SUPPORTED_MODELS)}")
    return canonical


def weights_env_var(model: str) -> str:
    """Name of the environment variable that holds a model's weight spec (``MODEL_WEIGHTS_RESNET50``).

    Lives here so the settings code and the error messages of :mod:`inference.weights` agree on it.
    """
    return f"MODEL_WEIGHTS_{normalise_model_name(model).upper()}"
