"""Reading the bytes of an image from where the user said it is: blob storage or an allowed URL.

Errors the user caused (a missing blob, a host that is not allowed, a 404, a file over the size cap)
raise ``ImageSourceError`` and fail only that image; network and storage hiccups raise anything else so
that the orchestrator's retry policy gets another try.

URL fetches are an SSRF surface: the URL policy (``url_policy``, shared with the HTTP API) parses a URL
once and the request is built from that parse, so what the allowlist check saw is what gets fetched. The
allowed host name is resolved once and the connection goes to that address (no DNS rebinding between check and
connect); redirects are refused; one deadline covers the whole fetch, so a server dripping a byte at a
time cannot hold an activity slot longer than ``URL_FETCH_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

from urllib3 import BaseHTTPResponse
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError

from contracts import ImageSource
from settings import Settings
from storage.blobs import BlobNotFoundError, BlobStore, BlobTooLargeError, InvalidBlobNameError
from url_policy import CheckedUrl, UrlNotAllowedError, check_url_allowed

_CHUNK_BYTES = 64 * 1024


class ImageSourceError(ValueError):
    """The image cannot be read for a reason that retrying will not change."""


def resolve_address(checked: CheckedUrl) -> str:
    """The address to connect to, resolved once so the connection goes where the check said
    (``socket.gaierror`` when the host does not resolve)."""
    return str(socket.getaddrinfo(checked.host, checked.port, type=socket.SOCK_STREAM)[0][4][0])


def _resolve(checked: CheckedUrl) -> str:
    try:
        return resolve_address(checked)
    except socket.gaierror as exc:
        raise ImageSourceError(f"image URL host {checked.host!r} does not resolve: {exc}") from None


def checked_connection(checked: CheckedUrl, address: str, timeout: float) -> HTTPConnection:
    if checked.scheme == "https":  # the certificate is checked against the name, not the address
        return HTTPSConnection(
            address, checked.port, timeout=timeout, server_hostname=checked.host, assert_hostname=checked.host
        )
    return HTTPConnection(address, checked.port, timeout=timeout)


class Deadline:
    """Cuts the connection when the fetch's time is up, whatever phase it is in (connect, headers, body).

    A per-read timeout never fires against a server that sends one byte just often enough. The deadline
    keeps its own reference to the socket: ``http.client`` drops ``connection.sock`` as soon as a response
    without a length arrives (it will close after the body), and a deadline that looked the socket up at
    expiry would then find nothing to cut while the body drips on.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket | None) -> None:
        """The socket to cut; cut at once if the time ran out while connecting."""
        with self._lock:
            self._sock = sock
            if self.expired.is_set():
                self._cut()

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            self._cut()

    def _cut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed
                # the plain socket call: SSLSocket.shutdown would also drop its TLS state under the reader
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _read_body(response: BaseHTTPResponse, url: str, limit: int) -> bytes:
    """Stream the body with a byte cap, so a huge or endless response is cut off early."""
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise ImageSourceError(f"image at {url} is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _get(connection: HTTPConnection, checked: CheckedUrl, url: str, limit: int) -> bytes:
    connection.request("GET", checked.target, headers={"Host": checked.host_header}, preload_content=False)
    response = connection.getresponse()
    if 300 <= response.status < 500:  # redirects are not followed: their target was never checked
        raise ImageSourceError(f"fetching {url} answered HTTP {response.status}")
    if response.status >= 500:  # transient: retried by the orchestrator
        raise ConnectionError(f"fetching {url} answered HTTP {response.status}")
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ImageSourceError(f"image at {url} is {declared} bytes, over the {limit}-byte limit")
    return _read_body(response, url, limit)


def fetch_url(url: str, settings: Settings) -> bytes:
    """Download at most ``max_image_bytes`` from an allowed URL within ``url_fetch_timeout_seconds`` in all."""
    try:
        checked = check_url_allowed(url, settings.url_allowed_hosts)
    except UrlNotAllowedError as exc:
        raise ImageSourceError(str(exc)) from None
    budget = settings.url_fetch_timeout_seconds
    connection = checked_connection(checked, _resolve(checked), budget)
    late = ImageSourceError(f"fetching {url} took longer than {budget:g} s (URL_FETCH_TIMEOUT_SECONDS)")
    try:
        with Deadline(budget) as deadline:
            try:
                connection.connect()
                deadline.watch(connection.sock)
                data = _get(connection, checked, url, settings.max_image_bytes)
            except (OSError, HTTPError):
                if deadline.expired.is_set():
                    raise late from None
                raise
        if deadline.expired.is_set():  # the cut may look like the end of a body without a length
            raise late
        return data
    finally:
        connection.close()


def read_image_bytes(source: ImageSource, store: BlobStore, settings: Settings) -> bytes:
    if source.blob:
        try:
            return store.get(source.blob, max_bytes=settings.max_image_bytes)
        except (BlobNotFoundError, InvalidBlobNameError, BlobTooLargeError) as exc:
            raise ImageSourceError(str(exc)) from None
    if source.url:
        return fetch_url(source.url, settings)
    raise ImageSourceError("image source names neither a blob nor a URL")
