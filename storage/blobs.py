"""Blob storage behind one small interface, so activities never care where bytes live.

Production and Azurite use :class:`AzureBlobStore`: on Azure with the app's managed identity (an account
URL and ``DefaultAzureCredential``, no key), with Azurite through a connection string. A laptop without any
emulator uses :class:`LocalFolderBlobStore`. Both accept exactly the same names ("container/path/in/container"),
so a name that works locally cannot fail later in Azure, and both are safe to share between the
threads of the Functions worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings, ExponentialRetry, StorageErrorCode

from storage.credential import shared_credential

MAX_BLOB_PATH_LENGTH = 1024
_PUT_ATTEMPTS = 5

# Azure's rule: 3-63 chars of lowercase letters, digits and single hyphens between them.
_CONTAINER_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class InvalidBlobNameError(ValueError):
    """A blob name or prefix that Azure would reject, or that could escape the local root."""


class BlobNotFoundError(KeyError):
    """The named blob does not exist (a ``KeyError`` so mapping-style callers can catch it)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:  # KeyError would repr() the argument
        return f"blob not found: {self.name}"


class BlobTooLargeError(ValueError):
    """The blob is bigger than the reader will take; found out before its bytes were read."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"blob {name} is {size} bytes, over the {limit}-byte limit")
        self.name, self.size, self.limit = name, size, limit


@dataclass(frozen=True)
class BlobInfo:
    """One listed blob: what retention needs to decide (its name, size and last write)."""

    name: str  # "container/path", as every other method takes it
    size: int
    last_modified: datetime  # timezone-aware UTC


@runtime_checkable
class BlobStore(Protocol):
    """Whole-blob reads and writes; names are "container/path/inside/container"."""

    def put(self, name: str, data: bytes, content_type: str | None = None) -> None:
        """Create or overwrite ``name``; readers see the old or the new bytes, never a mix."""

    def get(self, name: str, max_bytes: int | None = None) -> bytes:
        """The blob's bytes; :class:`BlobNotFoundError` if it does not exist, :class:`BlobTooLargeError` if it
        holds more than ``max_bytes``, before they are read (a client may name any blob: a deployment package
        of hundreds of MB must not be read into a worker's memory to be refused)."""

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None:
        """Remove ``name``; a missing blob is not an error (cleanup must be re-runnable)."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose name starts with ``prefix``; returns how many were removed."""

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        """Every blob whose name starts with ``prefix`` ("container/" lists a whole container), with its
        size and last-modified time, so a sweep can find what is old without reading any blob."""
        ...


def split_blob_name(name: str) -> tuple[str, str]:
    """Validate ``name`` and split it into (container, path inside the container).

    Beyond Azure's own rules, empty, ``.`` and ``..`` segments and backslashes are refused: the
    local store maps segments onto directories, and such names would alias other blobs or escape
    the root there.
    """
    container, path = _split(name, what="blob name")
    if not path:
        raise InvalidBlobNameError(f"blob name {name!r} has no path after the container")
    _check_path(name, path.split("/"))
    return container, path


def split_blob_prefix(prefix: str) -> tuple[str, str]:
    """Validate a ``delete_prefix`` argument: like a name, but it may end with ``/``.

    An empty path is refused on purpose: wiping a whole container should never be the result of
    an empty task id.
    """
    container, path = split_listing_prefix(prefix)
    if not path:
        raise InvalidBlobNameError(
            f"blob prefix {prefix!r} has no path after the container; refusing to empty a container"
        )
    return container, path


def split_listing_prefix(prefix: str) -> tuple[str, str]:
    """Validate a ``list_blobs`` argument: a container, then optionally the start of a path.

    Unlike a ``delete_prefix`` argument the path may be empty: listing a whole container is harmless.
    """
    container, path = _split(prefix, what="blob prefix")
    if path:
        segments = path.split("/")
        _check_path(prefix, segments[:-1] if path.endswith("/") else segments)
    return container, path


def _split(name: str, *, what: str) -> tuple[str, str]:
    if not isinstance(name, str):
        raise InvalidBlobNameError(f"{what} must be a str, not {type(name).__name__}")
    container, _, path = name.partition("/")
    if not (3 <= len(container) <= 63 and _CONTAINER_RE.fullmatch(container)):
        raise InvalidBlobNameError(
            f"{what} {name!r}: container {container!r} must be 3-63 characters of lowercase "
            "letters, digits and single hyphens, starting and ending with a letter or digit"
        )
    if len(path) > MAX_BLOB_PATH_LENGTH:
        raise InvalidBlobNameError(
            f"{what} {name[:80]!r}...: path is {len(path)} characters, at most {MAX_BLOB_PATH_LENGTH} allowed"
        )
    if "\\" in path or "\x00" in path:
        raise InvalidBlobNameError(f"{what} {name!r}: backslashes and NUL are not allowed")
    return container, path


def _check_path(name: str, segments: list[str]) -> None:
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidBlobNameError(f"blob name {name!r}: empty, '.' and '..' path segments are not allowed")


class LocalFolderBlobStore:
    """Blobs as files under ``root/container/path``.

    Writes go to a temporary file under ``root/.tmp`` (a name no container can take) and are
    renamed into place, so concurrent readers, including other processes, see whole files only.
    Content types are not kept: a folder has nowhere to put them and nothing here reads them back.
    Unlike Azure, a name cannot be both a blob and a "folder" of other blobs ("t/a" and "t/a/b").
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".tmp"

    def __repr__(self) -> str:
        return f"LocalFolderBlobStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        container, path = split_blob_name(name)
        return self.root / container / path

    def put(self, name: str, data: bytes, content_type: str | None = None) -> None:
        target = self._path(name)
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            # A concurrent delete may prune the freshly made parent folders; make them again.
            for attempt in range(1, _PUT_ATTEMPTS + 1):
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp_name, target)
                    return
                except FileNotFoundError:
                    if attempt == _PUT_ATTEMPTS:
                        raise
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def get(self, name: str, max_bytes: int | None = None) -> bytes:
        try:
            with self._path(name).open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLargeError(name, size, max_bytes)
                return file.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFoundError(name) from None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        container, path = split_blob_name(name)
        file_path = self.root / container / path
        if self._unlink(file_path):
            self._prune(file_path.parent, stop=self.root / container)

    def delete_prefix(self, prefix: str) -> int:
        container, path_prefix = split_blob_prefix(prefix)
        container_dir = self.root / container
        # Only the folder named by the prefix's complete segments can hold matches.
        start = container_dir / path_prefix.rpartition("/")[0]
        if not start.is_dir():
            return 0
        removed = 0
        for folder, _, files in os.walk(start, topdown=False):
            for file_name in files:
                file_path = Path(folder) / file_name
                if file_path.relative_to(container_dir).as_posix().startswith(path_prefix):
                    removed += self._unlink(file_path)
            self._prune(Path(folder), stop=container_dir)
        return removed

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        container, path_prefix = split_listing_prefix(prefix)
        container_dir = self.root / container
        for folder, _, files in os.walk(container_dir / path_prefix.rpartition("/")[0]):
            for file_name in files:
                path = Path(folder) / file_name
                relative = path.relative_to(container_dir).as_posix()
                if not relative.startswith(path_prefix):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted while listing: it is no longer there to report
                yield BlobInfo(
                    name=f"{container}/{relative}",
                    size=stat.st_size,
                    last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                )

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False

    @staticmethod
    def _prune(folder: Path, *, stop: Path) -> None:
        """Remove empty folders from ``folder`` up to (excluding) ``stop``, so deleted tasks
        leave nothing behind; a folder that another writer just filled is left alone."""
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


# Sub-requests one Blob Batch request may carry (Azure's limit), and the statuses of its answers.
BATCH_DELETE_LIMIT = 256
_ACCEPTED, _NOT_FOUND = 202, 404


#: Retries of one blob request: two, about 1 and 3 s after the failure. The SDK's default (three, 15 s apart and
#: growing, ±3 s) made an HTTP upload wait 86 s for a storage account that was down before it failed; the
#: activities that read and write blobs have the orchestration's retries around them, and starters answer 503
#: so that clients retry.
#: The first response of a download carries at most ``max_single_get_size`` bytes (32 MiB by default) with the
#: blob's size: 4 MiB bounds what a read refused for its size has fetched (an image over 4 MiB takes a request
#: per further 4 MiB, the SDK's chunk size).
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2, random_jitter_range=1),
    "connection_timeout": 10,
    "max_single_get_size": 4 * 1024 * 1024,
}


class AzureBlobStore:
    """Azure Blob Storage (or Azurite) through one reused, thread-safe ``BlobServiceClient``.

    Containers are created lazily: a put that fails with ``ContainerNotFound`` creates the
    container and retries, so the common path costs one request and no setup step is needed.
    """

    def __init__(
        self,
        connection_string: str = "",
        *,
        account_url: str = "",
        credential: TokenCredential | None = None,
    ) -> None:
        """A connection string (account key, Azurite), or an account URL
        (``https://<account>.blob.core.windows.net/``) and an Entra credential with a blob data role."""
        if connection_string:
            self._service = BlobServiceClient.from_connection_string(connection_string, **_CLIENT_OPTIONS)
        elif account_url and credential is not None:
            self._service = BlobServiceClient(account_url=account_url, credential=credential, **_CLIENT_OPTIONS)
        else:
            raise ValueError("AzureBlobStore needs a connection string, or an account URL and a credential")

    def __repr__(self) -> str:
        return f"AzureBlobStore({self.account_url!r})"

    @property
    def account_url(self) -> str:
        return self._service.url

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._service.close()

    def _blob(self, name: str) -> BlobClient:
        container, path = split_blob_name(name)
        return self._service.get_blob_client(container, path)

    def put(self, name: str, data: bytes, content_type: str | None = None) -> None:
        blob = self._blob(name)
        settings = ContentSettings(content_type=content_type) if content_type else None
        try:
            blob.upload_blob(data, overwrite=True, content_settings=settings)
        except ResourceNotFoundError as error:
            # azure-storage-blob sets error_code on what it raises; azure-core's class does not declare it.
            if getattr(error, "error_code", None) != StorageErrorCode.CONTAINER_NOT_FOUND:
                raise
            with contextlib.suppress(ResourceExistsError):  # another thread or process created it first
                self._service.create_container(blob.container_name)
            blob.upload_blob(data, overwrite=True, content_settings=settings)

    def get(self, name: str, max_bytes: int | None = None) -> bytes:
        """The first response carries the blob's size with at most its first ``max_single_get_size`` bytes
        (4 MiB here): a blob over ``max_bytes`` is refused there, before the rest is requested."""
        try:
            downloader = self._blob(name).download_blob()
        except ResourceNotFoundError:
            raise BlobNotFoundError(name) from None
        size = downloader.properties.size
        if max_bytes is not None and size > max_bytes:
            raise BlobTooLargeError(name, size, max_bytes)
        return downloader.readall()

    def exists(self, name: str) -> bool:
        return self._blob(name).exists()

    def delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._blob(name).delete_blob(delete_snapshots="include")

    def delete_prefix(self, prefix: str) -> int:
        """One List Blobs call and one Blob Batch request per :data:`BATCH_DELETE_LIMIT` blobs.

        The persist activity runs this on every task's way to Completed (an 8-image task with two models of
        different transforms leaves 16 tensors): a round trip per blob, as this did before, made that 17
        sequential requests; against Azurite 16 blobs took 69-81 ms that way and 34-50 ms batched
        (``docs/tuning_experiments_2026-11-24.txt``).
        """
        container_name, path_prefix = split_blob_prefix(prefix)
        container = self._service.get_container_client(container_name)
        try:
            names = list(container.list_blob_names(name_starts_with=path_prefix))
        except ResourceNotFoundError:
            return 0  # no container, nothing to delete
        removed = 0
        for start in range(0, len(names), BATCH_DELETE_LIMIT):
            chunk = names[start : start + BATCH_DELETE_LIMIT]
            answers = container.delete_blobs(*chunk, delete_snapshots="include", raise_on_any_failure=False)
            for name, answer in zip(chunk, answers, strict=True):
                if answer.status_code == _ACCEPTED:
                    removed += 1
                elif answer.status_code != _NOT_FOUND:  # not found: deleted concurrently, someone else's count
                    raise HttpResponseError(message=f"deleting blob {container_name}/{name}", response=answer)
        return removed

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        container_name, path_prefix = split_listing_prefix(prefix)
        container = self._service.get_container_client(container_name)
        try:
            for blob in container.list_blobs(name_starts_with=path_prefix or None):
                yield BlobInfo(name=f"{container_name}/{blob.name}", size=blob.size, last_modified=blob.last_modified)
        except ResourceNotFoundError:
            return  # no container, nothing in it


def open_blob_store(connection_string: str | None, local_root: str | Path, *, account_url: str = "") -> BlobStore:
    """The store the settings ask for, first match wins: a connection string (``UseDevelopmentStorage=true``
    included, which means Azurite on port 10000); an account URL, signed in with ``DefaultAzureCredential``
    (on Azure the managed identity whose client id is ``AZURE_CLIENT_ID``; on a laptop ``az login``), the
    process's shared one (:mod:`storage.credential`); else a local folder."""
    if connection_string and connection_string.strip():
        return AzureBlobStore(connection_string.strip())
    if account_url.strip():
        return AzureBlobStore(account_url=account_url.strip(), credential=shared_credential())
    return LocalFolderBlobStore(Path(local_root))
