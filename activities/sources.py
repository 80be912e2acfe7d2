"""Reading the bytes of an image from where the user said it is: blob storage or an allowed URL.

Errors the user caused (a missing blob, a host that is not allowed, a 404, a file over the size cap)
raise ``ImageSourceError`` and fail only that image; network and storage hiccups raise anything else so
that the orchestrator's retry policy gets another try.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from contracts import ImageSource
from settings import Settings
from storage.blobs import BlobNotFoundError, BlobStore, InvalidBlobNameError


class ImageSourceError(ValueError):
    """The image cannot be read for a reason that retrying will not change."""


def check_url_allowed(url: str, allowed_hosts: frozenset[str]) -> None:
    """Refuse URLs outside the allowlist: fetching arbitrary URLs from a server invites SSRF."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageSourceError(f"image URL {url!r} must be an absolute http(s) URL")
    if not allowed_hosts:
        raise ImageSourceError("image URLs are disabled: set URL_ALLOWED_HOSTS to the hosts to allow")
    if parts.hostname.lower() not in allowed_hosts:
        raise ImageSourceError(
            f"image URL host {parts.hostname!r} is not in URL_ALLOWED_HOSTS ({', '.join(sorted(allowed_hosts))})"
        )


def fetch_url(url: str, settings: Settings) -> bytes:
    """Download at most ``max_image_bytes``, streaming so a huge response is cut off early."""
    check_url_allowed(url, settings.url_allowed_hosts)
    limit = settings.max_image_bytes
    with requests.get(
        url, stream=True, timeout=settings.url_fetch_timeout_seconds, allow_redirects=False
    ) as response:
        if 400 <= response.status_code < 500 or 300 <= response.status_code < 400:
            raise ImageSourceError(f"fetching {url} answered HTTP {response.status_code}")
        response.raise_for_status()  # 5xx: transient, retried
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ImageSourceError(f"image at {url} is {declared} bytes, over the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ImageSourceError(f"image at {url} is over the {limit}-byte limit")
            chunks.append(chunk)
    return b"".join(chunks)


def read_image_bytes(source: ImageSource, store: BlobStore, settings: Settings) -> bytes:
    if source.blob:
        try:
            data = store.get(source.blob)
        except (BlobNotFoundError, InvalidBlobNameError) as exc:
            raise ImageSourceError(str(exc)) from None
        if len(data) > settings.max_image_bytes:
            raise ImageSourceError(
                f"blob {source.blob} is {len(data)} bytes, over the {settings.max_image_bytes}-byte limit"
            )
        return data
    if source.url:
        return fetch_url(source.url, settings)
    raise ImageSourceError("image source names neither a blob nor a URL")
