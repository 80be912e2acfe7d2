"""Finding local images and packing them into task payloads for ``POST /api/tasks``.

Folders are searched by file extension, but a file named explicitly is always sent: whether bytes are
an image is the server's decision, and its per-image error is a better message than a local guess.
Images go as base64 ``{"data", "name"}`` entries because that is the one source that needs neither
blob storage access nor an allowed URL host, so it works against any deployment.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Extensions picked up from folders (case-insensitive); explicitly named files are sent regardless.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff")


class InputError(ValueError):
    """A local problem with what the user asked to send, found before anything is uploaded."""


@dataclass(frozen=True)
class LocalImage:
    """A file to upload and the name it is reported under (its path relative to the folder given)."""

    path: Path
    name: str

    def to_json(self) -> dict[str, str]:
        return {"data": base64.b64encode(self.path.read_bytes()).decode("ascii"), "name": self.name}


def find_images(paths: Sequence[Path]) -> list[LocalImage]:
    """Expand files and folders into images, in the order given, folders sorted and recursed.

    Raises :class:`InputError` for a path that does not exist or a folder without images, so that a
    typo never turns into an empty or partial submission.
    """
    found: list[LocalImage] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_file():
            candidates = [LocalImage(path, path.name)]
        elif path.is_dir():
            candidates = [LocalImage(p, p.relative_to(path).as_posix()) for p in _images_in(path)]
            if not candidates:
                raise InputError(f"no images in folder {path} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        else:
            raise InputError(f"no such file or folder: {path}")
        for image in candidates:
            resolved = image.path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(image)
    return found


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


#: Base64 of the images of one task at most: Azure Functions refuses a request body over 100 MB (and so does
#: the local host), and the JSON around the images needs a little of it.
MAX_TASK_BASE64_BYTES = 75 * 1000 * 1000


def task_groups(images: Sequence[LocalImage], batch: int) -> Iterator[list[LocalImage]]:
    """Consecutive groups of at most ``batch`` images whose base64 stays under :data:`MAX_TASK_BASE64_BYTES`.

    Sixteen phone photos of 5 MB make about 107 MB of base64: counting images alone, the default batch would
    be refused with a 413. An image too large on its own goes alone; the server says what is wrong with it.
    """
    if batch < 1:
        raise ValueError(f"batch size must be at least 1, got {batch}")
    group: list[LocalImage] = []
    used = 0
    for image in images:
        encoded = 4 * ((image.path.stat().st_size + 2) // 3)
        if group and (len(group) == batch or used + encoded > MAX_TASK_BASE64_BYTES):
            yield group
            group, used = [], 0
        group.append(image)
        used += encoded
    if group:
        yield group


def task_payload(
    images: Sequence[LocalImage], models: Sequence[str], top_k: int, routing: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The JSON body of one ``POST /api/tasks``; files are read here, one task at a time.

    ``routing`` adds ``session`` / ``reply_to`` (the same for every task of one submission)."""
    images_json = [image.to_json() for image in images]
    return {"models": list(models), "top_k": top_k, "images": images_json, **(routing or {})}
