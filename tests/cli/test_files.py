"""Finding images locally and packing them into tasks: what is sent, in which order, and what is refused."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from classifier_cli.files import MAX_TASK_BASE64_BYTES, InputError, LocalImage, find_images, task_groups, task_payload

pytestmark = pytest.mark.unit


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_folder_gives_its_images_sorted_recursively_by_extension(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "notes.txt", "sub/c.jpeg", "sub/readme.md", "z.webp", "y.avif"):
        touch(tmp_path / name)
    found = find_images([tmp_path])
    assert [image.name for image in found] == ["a.PNG", "b.jpg", "sub/c.jpeg", "y.avif", "z.webp"]
    assert all(image.path.is_file() for image in found)


def test_files_and_folders_keep_the_given_order_and_named_files_are_sent_whatever_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    touch(folder / "one.jpg")
    touch(folder / "two.jpg")
    text = touch(tmp_path / "notes.txt")
    found = find_images([text, folder, folder / "one.jpg"])  # one.jpg twice: sent once
    assert [image.name for image in found] == ["notes.txt", "one.jpg", "two.jpg"]


def test_a_missing_path_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    touch(tmp_path / "ok.jpg")
    with pytest.raises(InputError, match=r"no such file or folder: .*missing\.jpg"):
        find_images([tmp_path / "ok.jpg", tmp_path / "missing.jpg"])


def test_a_folder_without_images_is_refused(tmp_path: Path) -> None:
    touch(tmp_path / "notes.txt")
    with pytest.raises(InputError, match=r"no images in folder .* \(looked for \.jpg"):
        find_images([tmp_path])


def test_shared_photos_are_found(shared_images_dir: Path) -> None:
    found = find_images([shared_images_dir])
    assert [image.name for image in found] == sorted(p.name for p in shared_images_dir.glob("*.jpg"))


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [(5, 2, [2, 2, 1]), (4, 2, [2, 2]), (1, 16, [1]), (0, 3, []), (33, 16, [16, 16, 1])],
)
def test_tasks_respect_the_batch_size(tmp_path: Path, count: int, size: int, sizes: list[int]) -> None:
    images = [LocalImage(touch(tmp_path / f"{n}.jpg", b"x"), f"{n}.jpg") for n in range(count)]
    parts = list(task_groups(images, size))
    assert [len(part) for part in parts] == sizes
    assert [item for part in parts for item in part] == images


def test_tasks_stay_under_the_request_body_limit(tmp_path: Path) -> None:
    """Sixteen 5 MB photos are 107 MB of base64, over the 100 MB Azure takes: they go as two tasks."""
    photo = touch(tmp_path / "big.jpg", b"x" * 5_000_000)
    images = [LocalImage(photo, f"{n}.jpg") for n in range(16)]
    parts = list(task_groups(images, 16))
    assert [len(part) for part in parts] == [11, 5]
    assert all(4 * ((5_000_000 + 2) // 3) * len(part) <= MAX_TASK_BASE64_BYTES for part in parts)
    huge = LocalImage(touch(tmp_path / "huge.jpg", b"x" * 60_000_000), "huge.jpg")
    assert [len(part) for part in task_groups([images[0], huge, images[1]], 16)] == [1, 1, 1]


def test_a_zero_batch_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        list(task_groups([LocalImage(touch(tmp_path / "a.jpg", b"x"), "a.jpg")], 0))


def test_a_task_payload_carries_the_bytes_as_base64_with_the_file_name(tmp_path: Path) -> None:
    path = touch(tmp_path / "cat.jpg", b"\xff\xd8\xffbytes")
    payload = task_payload([LocalImage(path, "cat.jpg")], ("resnet18", "resnet50"), 3)
    assert payload["models"] == ["resnet18", "resnet50"] and payload["top_k"] == 3
    [image] = payload["images"]
    assert image["name"] == "cat.jpg"
    assert base64.b64decode(image["data"]) == b"\xff\xd8\xffbytes"
