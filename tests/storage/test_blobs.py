"""One behaviour suite for both blob stores: the local folder and Azure (a real Azurite)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import blobs
from storage.blobs import (
    AzureBlobStore,
    BlobNotFoundError,
    BlobStore,
    BlobTooLargeError,
    InvalidBlobNameError,
    LocalFolderBlobStore,
    open_blob_store,
)

pytestmark = pytest.mark.unit


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalFolderBlobStore(tmp_path / "blobs")
    else:
        azure = AzureBlobStore(request.getfixturevalue("azurite").connection_string)
        yield azure
        azure.close()


@pytest.fixture
def container() -> str:
    """A fresh container per test, so tests sharing one Azurite cannot see each other's blobs."""
    return f"t-{uuid.uuid4().hex[:16]}"


def test_round_trip_binary(store: BlobStore, container: str) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17) + bytes(range(256))  # over 4 MiB: read in chunks
    store.put(f"{container}/task/img.bin", data, content_type="application/octet-stream")
    assert store.get(f"{container}/task/img.bin") == data


def test_empty_blob(store: BlobStore, container: str) -> None:
    store.put(f"{container}/empty", b"")
    assert store.exists(f"{container}/empty")
    assert store.get(f"{container}/empty") == b""


def test_a_blob_over_max_bytes_is_refused_with_its_size(store: BlobStore, container: str) -> None:
    big, exact = os.urandom(5 * 1024 * 1024), os.urandom(1024 * 1024)
    store.put(f"{container}/big.bin", big)
    store.put(f"{container}/exact.bin", exact)
    store.put(f"{container}/empty.bin", b"")
    with pytest.raises(BlobTooLargeError) as raised:
        store.get(f"{container}/big.bin", max_bytes=len(exact))
    assert (raised.value.size, raised.value.limit) == (len(big), len(exact))
    assert str(raised.value) == f"blob {container}/big.bin is {len(big)} bytes, over the {len(exact)}-byte limit"
    assert store.get(f"{container}/exact.bin", max_bytes=len(exact)) == exact
    assert store.get(f"{container}/empty.bin", max_bytes=0) == b""
    with pytest.raises(BlobNotFoundError):
        store.get(f"{container}/missing.bin", max_bytes=1)


def test_overwrite(store: BlobStore, container: str) -> None:
    store.put(f"{container}/a.txt", b"first version, longer")
    store.put(f"{container}/a.txt", b"second")
    assert store.get(f"{container}/a.txt") == b"second"


def test_missing_blob(store: BlobStore, container: str) -> None:
    name = f"{container}/nope/missing.bin"
    with pytest.raises(BlobNotFoundError) as raised:
        store.get(name)
    assert isinstance(raised.value, KeyError)
    assert name in str(raised.value)
    store.put(f"{container}/other", b"x")  # the container exists, the blob still does not
    with pytest.raises(BlobNotFoundError):
        store.get(name)


def test_exists(store: BlobStore, container: str) -> None:
    assert not store.exists(f"{container}/dir/x")
    store.put(f"{container}/dir/x", b"1")
    assert store.exists(f"{container}/dir/x")
    assert not store.exists(f"{container}/dir")  # a "folder" is not a blob


def test_delete(store: BlobStore, container: str) -> None:
    store.put(f"{container}/dir/x", b"1")
    store.put(f"{container}/dir/y", b"2")
    store.delete(f"{container}/dir/x")
    assert not store.exists(f"{container}/dir/x")
    assert store.get(f"{container}/dir/y") == b"2"
    store.delete(f"{container}/dir/x")  # already gone
    store.delete(f"{container}/never/existed")
    store.delete(f"never-{container}/x")  # container missing too


def test_delete_prefix(store: BlobStore, container: str) -> None:
    keep = {f"{container}/tensors/task-10/0.pt", f"{container}/images/task-1/0.jpg"}
    doomed = {
        f"{container}/tensors/task-1/0.pt",
        f"{container}/tensors/task-1/deep/er/1.pt",
        f"{container}/tensors/task-1/2.pt",
    }
    for name in keep | doomed:
        store.put(name, name.encode())
    assert store.delete_prefix(f"{container}/tensors/task-1/") == 3
    assert all(not store.exists(name) for name in doomed)
    assert all(store.get(name) == name.encode() for name in keep)
    assert store.delete_prefix(f"{container}/tensors/task-1/") == 0


@pytest.mark.azurite
def test_azure_deletes_a_prefix_in_batches_and_counts_only_its_own_deletions(
    azurite: Any, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several Blob Batch requests when there are more blobs than one may carry (3 a batch here), and a blob
    that another deleter removed between the listing and the batch is not counted (nor an error)."""
    monkeypatch.setattr(blobs, "BATCH_DELETE_LIMIT", 3)
    store = AzureBlobStore(azurite.connection_string)
    try:
        names = [f"{container}/tensors/task-1/{i}.u8" for i in range(7)]
        for name in names:
            store.put(name, b"t")
        store.put(f"{container}/tensors/task-2/0.u8", b"kept")
        client = store._service.get_container_client(container)
        listed = client.list_blob_names

        def listing_then_a_concurrent_delete(**kwargs: Any) -> Iterator[str]:
            found = list(listed(**kwargs))
            store.delete(names[4])  # gone before the batch that carries it
            return iter(found)

        monkeypatch.setattr(client, "list_blob_names", listing_then_a_concurrent_delete)
        monkeypatch.setattr(store._service, "get_container_client", lambda _name: client)
        assert store.delete_prefix(f"{container}/tensors/task-1/") == 6
        assert not any(store.exists(name) for name in names)
        assert store.get(f"{container}/tensors/task-2/0.u8") == b"kept"
    finally:
        store.close()


def test_delete_prefix_matches_partial_segments(store: BlobStore, container: str) -> None:
    """A prefix is a string prefix, as in Azure, not a folder: "task-1" also matches "task-10"."""
    for name in ("t/task-1/a", "t/task-10/b", "t/task-2/c", "t/task-1x"):
        store.put(f"{container}/{name}", b"x")
    assert store.delete_prefix(f"{container}/t/task-1") == 3
    assert store.exists(f"{container}/t/task-2/c")


def test_delete_prefix_missing_container(store: BlobStore, container: str) -> None:
    assert store.delete_prefix(f"{container}/anything/") == 0


def test_folder_names_can_be_reused_after_delete(store: BlobStore, container: str) -> None:
    store.put(f"{container}/a/b/c", b"1")
    store.delete_prefix(f"{container}/a/")
    store.put(f"{container}/a/b/d", b"2")
    assert store.get(f"{container}/a/b/d") == b"2"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "nocontainer",
        "ab/x",  # container too short
        "a" * 64 + "/x",  # container too long
        "Upper/x",
        "under_score/x",
        "-lead/x",
        "trail-/x",
        "dou--ble/x",
        "good/",  # empty path
        "good/../escape",
        "good/a/../../escape",
        "good/./x",
        "good//x",
        "good/x/",
        "/good/x",
        "good/back\\slash",
        "good/" + "x" * 1025,
    ],
)
def test_invalid_names(store: BlobStore, name: str) -> None:
    for call in (
        lambda: store.put(name, b"x"),
        lambda: store.get(name),
        lambda: store.exists(name),
        lambda: store.delete(name),
    ):
        with pytest.raises(InvalidBlobNameError) as raised:
            call()
        assert isinstance(raised.value, ValueError)
        assert str(raised.value)


def test_longest_valid_name(store: BlobStore) -> None:
    name = "a" * 63 + "/" + "/".join(["x" * 99] * 10) + "/" + "y" * 24
    assert len(name.partition("/")[2]) == 1024
    store.put(name, b"ok")
    assert store.get(name) == b"ok"


@pytest.mark.parametrize("prefix", ["good", "good/", "good/../x", "Bad/x", "good/a//"])
def test_invalid_prefixes(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidBlobNameError):
        store.delete_prefix(prefix)


def test_concurrent_puts_into_a_new_container(store: BlobStore, container: str) -> None:
    """Many threads racing to create the same container and folders must all succeed."""
    names = [f"{container}/task/{i % 4}/{i}.bin" for i in range(48)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda name: store.put(name, name.encode() * 100), names))
        contents = list(pool.map(store.get, names))
    assert contents == [name.encode() * 100 for name in names]


def test_readers_never_see_a_partial_overwrite(store: BlobStore, container: str) -> None:
    name = f"{container}/shared.bin"
    versions = [bytes([v]) * (1024 * 1024) for v in range(4)]
    store.put(name, versions[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def write() -> None:
        for round_ in range(12):
            store.put(name, versions[round_ % len(versions)])

    def read() -> None:
        while not stop.is_set():
            seen.append(store.get(name))

    with ThreadPoolExecutor(max_workers=6) as pool:
        readers = [pool.submit(read) for _ in range(3)]
        writers = [pool.submit(write) for _ in range(3)]
        for future in writers:
            future.result()
        stop.set()
        for future in readers:
            future.result()
    assert seen
    assert all(data in versions for data in seen)


def test_concurrent_delete_prefix_and_put(store: BlobStore, container: str) -> None:
    """Cleanup of one task must not break writes of another under the same parent folder."""
    for i in range(30):
        store.put(f"{container}/tensors/old/{i}", b"x")
    with ThreadPoolExecutor(max_workers=8) as pool:
        cleaner = pool.submit(store.delete_prefix, f"{container}/tensors/old/")
        puts = [pool.submit(store.put, f"{container}/tensors/new/{i}", b"y") for i in range(30)]
        for future in puts:
            future.result()
        assert cleaner.result() == 30
    assert all(store.get(f"{container}/tensors/new/{i}") == b"y" for i in range(30))


def test_local_store_layout_and_no_temp_leftovers(tmp_path: Path) -> None:
    store = LocalFolderBlobStore(tmp_path)
    store.put("images/task/0.jpg", b"jpeg")
    assert (tmp_path / "images" / "task" / "0.jpg").read_bytes() == b"jpeg"
    assert list((tmp_path / ".tmp").iterdir()) == []
    store.delete("images/task/0.jpg")
    assert not (tmp_path / "images" / "task").exists()  # empty folders pruned
    assert (tmp_path / "images").is_dir()


def test_open_blob_store_local(tmp_path: Path) -> None:
    for setting in (None, "", "   "):
        store = open_blob_store(setting, tmp_path)
        assert isinstance(store, LocalFolderBlobStore)
        assert store.root == tmp_path


def test_open_blob_store_development_storage(tmp_path: Path) -> None:
    store = open_blob_store("UseDevelopmentStorage=true", tmp_path)
    assert isinstance(store, AzureBlobStore)
    assert store.account_url.startswith("http://127.0.0.1:10000/devstoreaccount1")


def test_open_blob_store_azure(azurite, tmp_path: Path, container: str) -> None:
    store = open_blob_store(azurite.connection_string, tmp_path)
    assert isinstance(store, AzureBlobStore)
    store.put(f"{container}/x", b"via azurite")
    assert store.get(f"{container}/x") == b"via azurite"
    assert not any(tmp_path.iterdir())


def test_list_blobs_names_sizes_and_times(store: BlobStore, container: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)  # Azurite's clock has one-second resolution
    names = {f"{container}/task-1/0.jpg": b"a", f"{container}/task-1/deep/1.u8": b"bb", f"{container}/task-10/x": b""}
    for name, data in names.items():
        store.put(name, data)
    after = datetime.now(UTC) + timedelta(seconds=5)
    listed = {blob.name: blob for blob in store.list_blobs(f"{container}/")}
    assert {name: blob.size for name, blob in listed.items()} == {name: len(data) for name, data in names.items()}
    assert all(before <= blob.last_modified <= after for blob in listed.values())
    assert {blob.name for blob in store.list_blobs(container)} == set(names)
    # A string prefix, as in Azure: "task-1" matches "task-10" too, "task-1/" does not.
    assert {blob.name for blob in store.list_blobs(f"{container}/task-1/")} == set(list(names)[:2])
    assert {blob.name for blob in store.list_blobs(f"{container}/task-1")} == set(names)


def test_list_blobs_of_a_missing_container_is_empty(store: BlobStore, container: str) -> None:
    assert list(store.list_blobs(f"{container}/")) == []
    assert list(store.list_blobs(f"{container}/some/prefix")) == []


@pytest.mark.parametrize("prefix", ["Bad/x", "good/../x", "good/a//b", "ab/"])
def test_invalid_listing_prefixes(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidBlobNameError):
        list(store.list_blobs(prefix))


def test_local_listing_reports_the_file_modification_time(tmp_path: Path) -> None:
    """Retention reads the last write: an upload written two days ago is listed as two days old."""
    store = LocalFolderBlobStore(tmp_path)
    store.put("uploads/old-task/0.jpg", b"jpeg")
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    os.utime(tmp_path / "uploads" / "old-task" / "0.jpg", (two_days_ago.timestamp(), two_days_ago.timestamp()))
    (blob,) = store.list_blobs("uploads/")
    assert abs(blob.last_modified - two_days_ago) < timedelta(seconds=1)
    assert blob.last_modified.tzinfo is UTC
