from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from inference.errors import InvalidCheckpointError, InvalidWeightsSpecError, WeightsUnavailableError
from inference.weights import DOWNLOAD_SOCKET_TIMEOUT_S, canonical_spec, create_model, resolve_weights
from tests.fixtures.checkpoints import CANONICAL_FILES

pytestmark = pytest.mark.unit


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "model,name",
    # ResNet50's files (~100 MB each to hash and load) are left to the full run; the fast loop checks ResNet18's.
    [pytest.param(*key, marks=pytest.mark.slow) if key[0] == "resnet50" else key for key in CANONICAL_FILES],
)
def test_canonical_weights_load_from_torch_home_and_are_labelled_unverified(
    model: str, name: str, torch_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file_name, _ = CANONICAL_FILES[(model, name)]
    path = torch_home / "hub" / "checkpoints" / file_name
    with caplog.at_level(logging.WARNING, logger="inference.weights"):
        weights = resolve_weights(model, name, allow_download=False)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    published = file_name.split("-")[1].split(".")[0]
    assert weights.checkpoint_path == path and weights.sha256 == sha and weights.verified is False
    assert weights.label == (
        f"torchvision {type(weights.base_weights).__name__}.{name} from {file_name} "
        f"— UNVERIFIED: sha256 {sha[:8]} does not match the published {published}"
    )
    assert "UNVERIFIED" in caplog.text
    net = create_model(weights)
    assert not net.training
    assert torch.equal(net.fc.weight, torch.load(path, weights_only=True)["fc.weight"])


@pytest.mark.parametrize(
    "model,spec,key",
    [
        ("resnet18", "IMAGENET1K_V1", "r256-c224-bilinear"),
        ("resnet50", "IMAGENET1K_V1", "r256-c224-bilinear"),
        ("resnet50", "IMAGENET1K_V2", "r232-c224-bilinear"),
        ("resnet50", "DEFAULT", "r232-c224-bilinear"),
    ],
)
def test_transform_description_matches_torchvision(model: str, spec: str, key: str) -> None:
    weights = resolve_weights(model, spec, allow_download=False)
    preset = weights.transforms()
    assert weights.transform_key == key
    assert [weights.resize_size] == preset.resize_size and [weights.crop_size] == preset.crop_size
    assert list(weights.mean) == preset.mean and list(weights.std) == preset.std
    assert len(weights.categories) == 1000 and weights.categories[281] == "tabby"


def test_missing_file_without_download_gives_guidance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("resnet50", "DEFAULT", allow_download=False)
    message = str(info.value)
    assert "resnet50-11ad3fa6.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "MODEL_WEIGHTS_RESNET50=file:/path/to/checkpoint.pth" in message
    assert "MODEL_WEIGHTS_RESNET50=random" in message


def test_missing_file_with_download_fails_fast_or_gets_the_real_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline (the test machines) the download must fail within the socket timeout, with the guidance.

    With internet this downloads the real 47 MB ResNet18 file into a temporary folder, which must verify.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    started = time.monotonic()
    try:
        weights = resolve_weights("resnet18", "IMAGENET1K_V1")
    except WeightsUnavailableError as exc:
        assert time.monotonic() - started < 3 * DOWNLOAD_SOCKET_TIMEOUT_S
        assert "download failed" in str(exc) and "MODEL_WEIGHTS_RESNET18=random" in str(exc)
    else:
        assert weights.verified is True and weights.label.endswith("(sha256 verified)")


def test_concurrent_first_uses_download_a_published_checkpoint_once(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local host's weights report and its workers' prewarm start at once on a cold cache: one of them
    downloads, the others wait and use its file. The network cannot be reached here, so the download itself is
    a copy of a seeded checkpoint that takes a while; the lock and the file handling around it are the real ones.
    """
    file_name, _ = CANONICAL_FILES[("resnet18", "IMAGENET1K_V1")]
    seeded = torch_home / "hub" / "checkpoints" / file_name
    downloads: list[str] = []

    def slow_download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        downloads.append(url)
        time.sleep(0.3)
        shutil.copyfile(seeded, f"{dst}.partial")
        os.replace(f"{dst}.partial", dst)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", slow_download)
    start = threading.Barrier(4)

    def first_use() -> str:
        start.wait()
        return resolve_weights("resnet18", "IMAGENET1K_V1").label

    with ThreadPoolExecutor(4) as pool:
        labels = list(pool.map(lambda _: first_use(), range(4)))
    assert len(downloads) == 1, downloads
    assert len(set(labels)) == 1 and file_name in labels[0]


@pytest.mark.parametrize("wrapper", ["state_dict", "model", None])
def test_file_checkpoint_accepts_wrapped_and_ddp_prefixed_state_dicts(
    wrapper: str | None, tmp_path: Path, torch_home: Path
) -> None:
    source = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    state = {f"module.{k}": v for k, v in torch.load(source, weights_only=True).items()}
    path = tmp_path / "finetuned.pth"
    torch.save({wrapper: state, "epoch": 3} if wrapper else state, path)
    weights = resolve_weights("resnet18", f"file:{path}")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights.source == "file" and weights.sha256 == sha
    assert (
        weights.label
        == f"checkpoint {path} (sha256 {sha[:8]}), transforms/categories of ResNet18_Weights.IMAGENET1K_V1"
    )
    reference = create_model(resolve_weights("resnet18", "IMAGENET1K_V1", allow_download=False))
    assert _params_equal(create_model(weights), reference)


def test_a_checkpoint_is_hashed_once_per_version_of_the_file(
    tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolving the same file again reuses its digest; a file rewritten in place is hashed anew."""
    source = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path = tmp_path / "mine.pth"
    path.write_bytes(source.read_bytes())
    hashed: list[int] = []
    real = hashlib.sha256
    monkeypatch.setattr("inference.weights.hashlib.sha256", lambda *data: hashed.append(1) or real(*data))
    first = resolve_weights("resnet18", f"file:{path}")
    again = resolve_weights("resnet18", f"file:{path}")
    assert (len(hashed), again.sha256) == (1, first.sha256)
    state = torch.load(path, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0
    torch.save(state, path)
    changed = resolve_weights("resnet18", f"file:{path}")
    assert len(hashed) == 2 and changed.sha256 == real(path.read_bytes()).hexdigest() != first.sha256


def test_file_checkpoint_base_selects_transforms(tmp_path: Path, torch_home: Path) -> None:
    path = tmp_path / "r50.pth"
    path.write_bytes((torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth").read_bytes())
    assert resolve_weights("resnet50", f"file:{path}").transform_key == "r232-c224-bilinear"
    v1 = resolve_weights("resnet50", f"file:{path}#IMAGENET1K_V1")
    assert v1.transform_key == "r256-c224-bilinear" and "ResNet50_Weights.IMAGENET1K_V1" in v1.label


def test_wrong_architecture_checkpoint_is_named(tmp_path: Path, torch_home: Path) -> None:
    path = tmp_path / "r18.pth"
    path.write_bytes((torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").read_bytes())
    with pytest.raises(InvalidCheckpointError) as info:
        create_model(resolve_weights("resnet50", f"file:{path}"))
    message = str(info.value)
    assert "does not fit resnet50" in message and "missing keys" in message
    assert "It is a resnet18 checkpoint" in message


def test_wrong_class_count_is_named(tmp_path: Path, torch_home: Path) -> None:
    state = torch.load(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth", weights_only=True)
    state["fc.weight"], state["fc.bias"] = state["fc.weight"][:10], state["fc.bias"][:10]
    path = tmp_path / "ten_classes.pth"
    torch.save(state, path)
    with pytest.raises(InvalidCheckpointError, match=r"fc\.weight is \(10, 512\), expected \(1000, 512\)"):
        create_model(resolve_weights("resnet18", f"file:{path}"))


@pytest.mark.parametrize(
    "content,match",
    [(b"definitely not a checkpoint", "cannot read checkpoint"), ([1, 2, 3], "holds list, not a state_dict")],
)
def test_unreadable_checkpoint(content: object, match: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(InvalidCheckpointError, match=match):
        create_model(resolve_weights("resnet18", f"file:{path}"))


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights("resnet18", f"file:{tmp_path / 'nope.pth'}")


def test_random_weights_are_seeded_and_labelled_loudly() -> None:
    weights = resolve_weights("resnet18", "random:3")
    assert weights.label.startswith("RANDOM WEIGHTS (seed 3) — predictions are meaningless")
    assert weights.sha256 is None and weights.spec == "random:3#IMAGENET1K_V1"
    assert _params_equal(create_model(weights), create_model(resolve_weights("resnet18", "random:3")))
    assert not _params_equal(create_model(weights), create_model(resolve_weights("resnet18", "random:4")))
    assert resolve_weights("resnet18", "random").seed == 0


def test_canonical_spec_equivalences(tmp_path: Path) -> None:
    assert canonical_spec("ResNet50", "default") == canonical_spec("resnet50", "IMAGENET1K_V2") == "IMAGENET1K_V2"
    assert canonical_spec("resnet50", "random") == "random:0#IMAGENET1K_V2"
    assert canonical_spec("resnet18", f"file:{tmp_path}/x.pth") == f"file:{tmp_path}/x.pth#IMAGENET1K_V1"


@pytest.mark.parametrize(
    "model,spec,match",
    [
        ("resnet18", "IMAGENET1K_V2", "choose one of IMAGENET1K_V1, DEFAULT"),
        ("resnet18", "", "empty weights spec"),
        ("resnet18", "random:abc", "not an integer"),
        ("resnet18", "file:", "names no file"),
        ("resnet50", "IMAGENET1K_V1#IMAGENET1K_V2", "only applies to file: and random"),
    ],
)
def test_invalid_specs(model: str, spec: str, match: str) -> None:
    with pytest.raises(InvalidWeightsSpecError, match=match):
        resolve_weights(model, spec)


def test_check_file_false_describes_preprocessing_without_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preprocess step must work (and agree with inference) even where the weights file is missing."""
    full = {spec: resolve_weights("resnet50", spec, allow_download=False) for spec in ("IMAGENET1K_V1", "DEFAULT")}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for spec, weights in full.items():
        light = resolve_weights("resnet50", spec, allow_download=False, check_file=False)
        assert light.sha256 is None and "file not checked" in light.label
        assert (light.transform_key, light.mean, light.std, light.categories) == (
            weights.transform_key,
            weights.mean,
            weights.std,
            weights.categories,
        )
    absent = resolve_weights("resnet50", f"file:{tmp_path}/absent.pth#IMAGENET1K_V1", check_file=False)
    assert absent.transform_key == "r256-c224-bilinear"
