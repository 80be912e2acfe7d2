"""Checkpoints named as blobs (``blob:container/path.pth[#BASE]``): fetched once into a local folder.

torch loads checkpoints from files, so a blob-named checkpoint becomes the ``file:`` spec of its local
copy. The copy is keyed by the blob name and kept for the life of the folder: publish a new checkpoint
under a new name (every result's weights label carries the file's sha256, so a stale copy is visible).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from filelock import FileLock

from inference.errors import InvalidWeightsSpecError, WeightsUnavailableError
from settings import get_settings
from storage.blobs import BlobNotFoundError, BlobStore, InvalidBlobNameError, split_blob_name

BLOB_PREFIX = "blob:"


def _split(spec: str) -> tuple[str, str]:
    """``"blob:c/p.pth#BASE"`` -> (``"c/p.pth"``, ``"#BASE"``); :class:`InvalidWeightsSpecError` when the blob
    name is none Azure accepts (``blob:models``, no path), a setting error like any other malformed spec."""
    name, hash_sign, base = spec[len(BLOB_PREFIX) :].partition("#")
    try:
        split_blob_name(name.strip())
    except InvalidBlobNameError as exc:
        raise InvalidWeightsSpecError(f"weights spec {spec!r}: {exc}") from None
    return name.strip(), f"{hash_sign}{base}"


def local_copy(blob_name: str) -> Path:
    container, path = split_blob_name(blob_name)
    return Path(get_settings().checkpoint_cache_dir).absolute() / container / path


def as_file_spec(spec: str) -> str:
    """The ``file:`` spec that stands for ``spec`` (unchanged unless it names a blob); no I/O."""
    if not spec.lower().startswith(BLOB_PREFIX):
        return spec
    name, base = _split(spec)
    return f"file:{local_copy(name)}{base}"


def fetch_checkpoint(spec: str, store: BlobStore) -> str:
    """Make sure a blob-named checkpoint has its local copy; return the ``file:`` spec to load."""
    if not spec.lower().startswith(BLOB_PREFIX):
        return spec
    name, _ = _split(spec)
    target = local_copy(name)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):  # one download per blob on this machine (see inference.weights)
            if not target.is_file():
                _download(store, name, target)
    return as_file_spec(spec)


def _download(store: BlobStore, name: str, target: Path) -> None:
    try:
        data = store.get(name)
    except (BlobNotFoundError, InvalidBlobNameError) as exc:
        raise WeightsUnavailableError(
            f"checkpoint blob {name!r} cannot be read ({exc}): upload it, or change the MODEL_WEIGHTS_* "
            "setting that names it"
        ) from None
    descriptor, partial = tempfile.mkstemp(dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(partial, target)  # a concurrent reader sees the whole file or none
    except BaseException:  # a full disk: no partial file left behind by each retry
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
