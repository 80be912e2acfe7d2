"""Weight specs: which parameters a model runs with, where they come from, and how to load them.

A *spec* is the string an operator configures (``MODEL_WEIGHTS_<MODEL>``):

``IMAGENET1K_V1`` / ``IMAGENET1K_V2`` / ``DEFAULT``
    torchvision's published weights, through torchvision's own API: the file is downloaded once into
    ``$TORCH_HOME/hub/checkpoints/`` on a machine with internet and read from there afterwards.
``file:/path/to/checkpoint.pth[#IMAGENET1K_V1]``
    the user's own (e.g. fine-tuned) checkpoint; the optional ``#BASE`` names the torchvision weights whose
    preprocessing and category names apply (default: the model's :data:`~inference.catalog.DEFAULT_WEIGHTS`).
``random`` / ``random:SEED[#BASE]``
    seeded random initialisation, for smoke tests on machines without any checkpoint.

:func:`resolve_weights` turns a spec into :class:`ResolvedWeights` (cheap apart from hashing the file, and
the only step that may download); :func:`create_model` builds the ``nn.Module`` from it. Every
:class:`ResolvedWeights` carries a human ``label`` saying exactly which weights produced a prediction,
because a cached file is never hash-checked by torchvision and a wrong file would otherwise go unnoticed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
import torchvision
from filelock import FileLock
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.transforms import InterpolationMode

from inference.catalog import DEFAULT_WEIGHTS, SUPPORTED_MODELS, normalise_model_name, weights_env_var
from inference.errors import InvalidCheckpointError, InvalidWeightsSpecError, WeightsUnavailableError

log = logging.getLogger(__name__)

Source = Literal["torchvision", "file", "random"]

#: Per-operation socket timeout while downloading published weights. torch.hub opens the URL without a
#: timeout, so a black-holed network would hang the first request forever; with this it fails in seconds
#: while a slow but progressing download still completes (the timeout applies to each read, not the total).
DOWNLOAD_SOCKET_TIMEOUT_S = 20.0

_FILE_PREFIX = "file:"
_RANDOM = "random"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ResolvedWeights:
    """Everything known about one model's weights before (and after) loading them.

    ``transform_key`` identifies the preprocessing up to the uint8 crop (resize, crop, interpolation;
    antialiasing is always on in torchvision's ImageClassification preset): a tensor stored with one key can
    only be fed to models whose weights have the same key.
    """

    model: str
    spec: str  # canonical form, e.g. "IMAGENET1K_V2", "file:/abs/x.pth#IMAGENET1K_V1", "random:0#IMAGENET1K_V1"
    source: Source
    label: str
    sha256: str | None  # full hex digest of the file the parameters come from; None for random weights
    verified: bool | None  # torchvision files: sha256 matches the published prefix; None: nothing to check
    base_weights: WeightsEnum  # torchvision enum member whose transforms and categories apply
    checkpoint_path: Path | None
    seed: int | None
    resize_size: int
    crop_size: int
    interpolation: InterpolationMode
    mean: tuple[float, ...]
    std: tuple[float, ...]
    transform_key: str
    categories: tuple[str, ...] = field(repr=False)

    def transforms(self) -> nn.Module:
        """torchvision's reference preprocessing for these weights (PIL image -> normalised float CHW)."""
        preset: nn.Module = self.base_weights.transforms()  # WeightsEnum.transforms is an untyped partial
        return preset


@dataclass(frozen=True)
class _ParsedSpec:
    source: Source
    base: WeightsEnum
    path: Path | None = None
    seed: int | None = None

    def canonical(self) -> str:
        if self.source == "torchvision":
            return self.base.name
        if self.source == "file":
            return f"{_FILE_PREFIX}{self.path}#{self.base.name}"
        return f"{_RANDOM}:{self.seed}#{self.base.name}"


def canonical_spec(model: str, spec: str) -> str:
    """The canonical form of ``spec`` (no file access): equal strings mean the same weights.

    ``DEFAULT`` becomes the member it aliases, names are upper-cased, paths made absolute, the default base
    and seed spelled out. Used as a cache key so "default" and "IMAGENET1K_V2" share one loaded model.
    """
    return _parse_spec(normalise_model_name(model), spec).canonical()


def resolve_weights(model: str, spec: str, *, allow_download: bool = True, check_file: bool = True) -> ResolvedWeights:
    """Resolve ``spec`` for ``model``: find (or download) the file, hash it, and describe the weights.

    Raises :class:`InvalidWeightsSpecError` for a malformed spec, :class:`WeightsUnavailableError` when the
    file is missing and cannot be downloaded (immediately when ``allow_download`` is false), with a message
    that says how to provide it. A torchvision file whose hash differs from the published one is still used
    (it may be a deliberate replacement) but labelled UNVERIFIED and logged as a warning.

    ``check_file=False`` describes the transforms and categories without touching any file (no download, no
    hash): preprocessing needs only those, and must not fail an image because a model's file is missing.
    """
    name = normalise_model_name(model)
    parsed = _parse_spec(name, spec)
    base_label = f"transforms/categories of {_enum_label(parsed.base)}"
    if not check_file:
        return _describe(
            name, parsed, f"{parsed.canonical()} (file not checked), {base_label}", None, None, parsed.path
        )
    sha256: str | None = None
    verified: bool | None = None
    path: Path | None = None
    if parsed.source == "torchvision":
        path = _ensure_published_file(name, parsed.base, allow_download)
        sha256 = _sha256(path)
        expected = _published_hash_prefix(parsed.base)
        verified = sha256.startswith(expected)
        label = f"torchvision {_enum_label(parsed.base)} from {path.name}"
        if verified:
            label += " (sha256 verified)"
        else:
            label += f" — UNVERIFIED: sha256 {sha256[:8]} does not match the published {expected}"
            log.warning("weights file %s: %s", path, label)
    elif parsed.source == "file":
        path = parsed.path
        assert path is not None
        if not path.is_file():
            raise WeightsUnavailableError(
                f"checkpoint {path} for {name} does not exist or is not a file "
                f"(set {weights_env_var(name)}=file:/path/to/checkpoint.pth with an existing file)"
            )
        sha256 = _sha256(path)
        label = f"checkpoint {path} (sha256 {sha256[:8]}), {base_label}"
    else:
        label = f"RANDOM WEIGHTS (seed {parsed.seed}) — predictions are meaningless, {base_label}"
        log.warning("%s uses %s", name, label)
    return _describe(name, parsed, label, sha256, verified, path)


def create_model(weights: ResolvedWeights) -> nn.Module:
    """Build the fp32 CPU ``nn.Module`` for ``weights`` in eval mode.

    Checkpoints are checked key by key and shape by shape against the architecture before loading, so a
    wrong file fails with a message naming the problem instead of a wall of ``load_state_dict`` text. The
    module is created on the meta device and the loaded tensors are assigned to it, which skips a random
    initialisation that would be thrown away (0.6 s for ResNet50 on two cores).
    """
    builder = torchvision.models.get_model_builder(weights.model)
    if weights.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(weights.seed if weights.seed is not None else 0)
            net = builder()
        return net.eval()
    state_dict = _read_state_dict(weights)
    _check_state_dict(weights.model, state_dict, weights.checkpoint_path)
    with torch.device("meta"):
        net = builder()
    net.load_state_dict(state_dict, strict=True, assign=True)
    return net.eval()


def _describe(
    model: str,
    parsed: _ParsedSpec,
    label: str,
    sha256: str | None,
    verified: bool | None,
    path: Path | None,
) -> ResolvedWeights:
    preset = parsed.base.transforms()
    resize_size, crop_size = int(preset.resize_size[0]), int(preset.crop_size[0])
    interpolation = preset.interpolation
    return ResolvedWeights(
        model=model,
        spec=parsed.canonical(),
        source=parsed.source,
        label=label,
        sha256=sha256,
        verified=verified,
        base_weights=parsed.base,
        checkpoint_path=path,
        seed=parsed.seed,
        resize_size=resize_size,
        crop_size=crop_size,
        interpolation=interpolation,
        mean=tuple(float(m) for m in preset.mean),
        std=tuple(float(s) for s in preset.std),
        transform_key=f"r{resize_size}-c{crop_size}-{interpolation.value}",
        categories=tuple(parsed.base.meta["categories"]),
    )


def _parse_spec(model: str, spec: str) -> _ParsedSpec:
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidWeightsSpecError(f"empty weights spec for {model}: {_spec_help(model)}")
    text = spec.strip()
    if text.lower().startswith(_FILE_PREFIX):
        location, base = _split_base(model, text[len(_FILE_PREFIX) :])
        if not location:
            raise InvalidWeightsSpecError(f"weights spec {spec!r} names no file: {_spec_help(model)}")
        return _ParsedSpec("file", base, path=Path(location).expanduser().absolute())
    head, base = _split_base(model, text)
    if head.lower() == _RANDOM or head.lower().startswith(_RANDOM + ":"):
        seed_text = head[len(_RANDOM) + 1 :] or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise InvalidWeightsSpecError(f"weights spec {spec!r}: seed {seed_text!r} is not an integer") from None
        return _ParsedSpec("random", base, seed=seed)
    if "#" in text:
        raise InvalidWeightsSpecError(f"weights spec {spec!r}: '#BASE' only applies to file: and random specs")
    return _ParsedSpec("torchvision", _enum_member(model, text))


def _split_base(model: str, text: str) -> tuple[str, WeightsEnum]:
    """Split ``"what#BASE"``; the part after the last ``#`` names the base torchvision weights."""
    if "#" in text:
        head, base_name = text.rsplit("#", 1)
        return head, _enum_member(model, base_name)
    return text, _enum_member(model, DEFAULT_WEIGHTS[model])


def _enum_member(model: str, name: str) -> WeightsEnum:
    enum = torchvision.models.get_model_weights(model)
    member = enum.__members__.get(name.strip().upper())
    if member is None:
        raise InvalidWeightsSpecError(
            f"{model} has no torchvision weights {name!r}: choose one of {', '.join(enum.__members__)}, "
            f"or {_spec_help(model)}"
        )
    return member


def _spec_help(model: str) -> str:
    return (
        f"{weights_env_var(model)} takes a torchvision weights name (e.g. {DEFAULT_WEIGHTS[model]}), "
        "'file:/path/to/checkpoint.pth[#BASE]' or 'random[:SEED]'"
    )


def _enum_label(member: WeightsEnum) -> str:
    return f"{type(member).__name__}.{member.name}"


def _published_file_name(member: WeightsEnum) -> str:
    url: str = member.url
    return os.path.basename(urlparse(url).path)


def _published_hash_prefix(member: WeightsEnum) -> str:
    match = torch.hub.HASH_REGEX.search(_published_file_name(member))
    assert match is not None, f"torchvision URL without hash: {member.url}"
    return match.group(1)


def _checkpoints_dir() -> Path:
    """torchvision's cache folder, read at call time so a changed ``TORCH_HOME`` is honoured."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _ensure_published_file(model: str, member: WeightsEnum, allow_download: bool) -> Path:
    folder = _checkpoints_dir()
    path = folder / _published_file_name(member)
    if path.is_file():
        return path
    if not allow_download:
        raise WeightsUnavailableError(_missing_file_message(model, member, path, "downloading is disabled"))
    # DEBUG before, INFO after: where downloading is impossible, the warning about the missing file is
    # the one line a user should see
    log.debug("downloading %s to %s", member.url, path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # one download per file on this machine: the local host's weights report and its workers' prewarm
        # (and several worker processes) start at once, and each would fetch the same 45-100 MB
        with FileLock(f"{path}.lock"):
            if path.is_file():
                return path
            with _download_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                torch.hub.download_url_to_file(
                    member.url, str(path), hash_prefix=_published_hash_prefix(member), progress=False
                )
    except Exception as exc:  # URLError, timeouts, disk errors, hash mismatch: all mean "not available"
        raise WeightsUnavailableError(
            _missing_file_message(model, member, path, f"download failed ({type(exc).__name__}: {exc})")
        ) from exc
    log.info("downloaded %s to %s", member.url, path)
    return path


def _missing_file_message(model: str, member: WeightsEnum, path: Path, reason: str) -> str:
    env = weights_env_var(model)
    return (
        f"weights {_enum_label(member)} for {model} are not available: {path.name} is not in {path.parent} "
        f"and {reason}. Do one of: (1) put {path.name} (from {member.url}) in {path.parent}/ "
        f"(that is $TORCH_HOME/hub/checkpoints; set TORCH_HOME to use another folder); "
        f"(2) set {env}=file:/path/to/checkpoint.pth to use your own checkpoint; "
        f"(3) set {env}=random for a smoke test (predictions are meaningless)."
    )


_timeout_lock = threading.Lock()


@contextmanager
def _download_timeout(seconds: float) -> Iterator[None]:
    """Give sockets opened inside the block a timeout, if the process has not chosen one itself.

    ``socket.setdefaulttimeout`` is process-wide; the lock keeps two concurrent downloads from restoring
    each other's value, and the block only lasts as long as a one-off download.
    """
    with _timeout_lock:
        previous = socket.getdefaulttimeout()
        if previous is None:
            socket.setdefaulttimeout(seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(previous)


_hashed: dict[tuple[str, int, int, int, int], str] = {}
_hashed_lock = threading.Lock()


def _sha256(path: Path) -> str:
    """The file's digest, computed once per version of the file in this process.

    A process resolves the same weights more than once (the local host's standalone process reports them,
    then its prewarm thread loads them): hashing ResNet50's 100 MB again would only repeat the answer. A
    file replaced or rewritten gets a new inode or modification time, and so a new digest.
    """
    with path.open("rb") as fh:
        stat = os.fstat(fh.fileno())
        key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with _hashed_lock:
            known = _hashed.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    with _hashed_lock:
        _hashed[key] = digest.hexdigest()
    return _hashed[key]


def _read_state_dict(weights: ResolvedWeights) -> dict[str, torch.Tensor]:
    """Load the checkpoint's tensors (weights_only: a checkpoint must never run code on load)."""
    path = weights.checkpoint_path
    assert path is not None
    try:
        if weights.source == "torchvision":
            # torchvision's own loader, pinned to the folder resolve_weights found the file in.
            raw: Any = weights.base_weights.get_state_dict(
                model_dir=str(path.parent), progress=False, weights_only=True, map_location="cpu"
            )
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidCheckpointError(
            f"cannot read checkpoint {path} for {weights.model} ({type(exc).__name__}: {exc}); "
            "it must be a torch.save'd state_dict of tensors. Replace or delete the file."
        ) from exc
    return _unwrap_state_dict(raw, path)


def _unwrap_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a plain state_dict or ``{"state_dict": ...}`` / ``{"model": ...}``; strip DDP's ``module.``.

    Floating tensors are cast to fp32 because they are *assigned* to the module: an fp16 checkpoint would
    otherwise turn the whole model fp16.
    """
    if isinstance(raw, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(raw.get(wrapper), Mapping):
                raw = raw[wrapper]
                break
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidCheckpointError(
            f"checkpoint {path} holds {type(raw).__name__}, not a state_dict "
            "(expected a mapping of parameter names to tensors, possibly under 'state_dict' or 'model')"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise InvalidCheckpointError(f"checkpoint {path}: entry {key!r} is {type(value).__name__}, not a tensor")
        name = key[len("module.") :] if key.startswith("module.") else key
        state[name] = value.float() if value.is_floating_point() else value
    return state


def _expected_shapes(model: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = torchvision.models.get_model_builder(model)()
    return {key: tuple(t.shape) for key, t in net.state_dict().items()}


def _check_state_dict(model: str, state: Mapping[str, torch.Tensor], path: Path | None) -> None:
    """Raise :class:`InvalidCheckpointError` naming missing/unexpected keys and wrong shapes."""
    expected = _expected_shapes(model)
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [
        f"{key} is {tuple(state[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    if not (missing or unexpected or wrong):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes (e.g. {'; '.join(wrong[:3])})")
    hint = _architecture_hint(model, state)
    raise InvalidCheckpointError(
        f"checkpoint {path} does not fit {model}: {', '.join(problems)}.{hint} "
        f"Checkpoints must be a {model} state_dict with a 1000-class ImageNet fc layer."
    )


def _architecture_hint(model: str, state: Mapping[str, torch.Tensor]) -> str:
    for other in SUPPORTED_MODELS:
        if other == model:
            continue
        shapes = _expected_shapes(other)
        if shapes.keys() == state.keys() and all(tuple(state[k].shape) == s for k, s in shapes.items()):
            return f" It is a {other} checkpoint: configure it for {other} instead."
    return ""
