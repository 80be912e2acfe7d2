"""Image URLs against real loopback servers: every allowlist trick is refused, every fetch is bounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activities.sources import ImageSourceError, fetch_url
from settings import settings_from
from url_policy import UrlNotAllowedError, check_url_allowed

pytestmark = pytest.mark.unit

SETTINGS = settings_from(
    {"URL_ALLOWED_HOSTS": "127.0.0.1,::1", "URL_FETCH_TIMEOUT_SECONDS": "1", "MAX_IMAGE_BYTES": "1000"}
)
BODY = b"\x89PNG not really"


class _Handler(BaseHTTPRequestHandler):
    """``/ok`` answers BODY (and echoes the Host header); ``/drip``, ``/drip-headers`` and ``/endless`` never finish."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2/ok")
            self.end_headers()
            return
        if self.path == "/drip-headers":  # a header line that never ends
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self._drip(b"x", 0.3)
            return
        self.send_response(200)
        if self.path == "/ok":
            body = BODY + self.headers["Host"].encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()  # no Content-Length: the body ends when the connection does
        if self.path == "/drip":
            self._drip(b"x", 0.3)
        else:
            self._drip(b"x" * 4096, 0)

    def _drip(self, piece: bytes, pause: float) -> None:
        try:
            while True:
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass


def _serve(family: socket.AddressFamily, host: str) -> Iterator[int]:
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    server = server_class((host, 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from _serve(socket.AF_INET, "127.0.0.1")


@pytest.fixture(scope="module")
def port6() -> Iterator[int]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 loopback")
    yield from _serve(socket.AF_INET6, "::1")


def test_allowed_urls_are_fetched_with_the_host_that_was_checked(port: int, port6: int) -> None:
    assert fetch_url(f"http://127.0.0.1:{port}/ok", SETTINGS) == BODY + f"127.0.0.1:{port}".encode()
    assert fetch_url(f"http://[::1]:{port6}/ok", SETTINGS) == BODY + f"[::1]:{port6}".encode()


@pytest.mark.parametrize(
    "template",
    [
        "http://[::1]:{port6}\\@127.0.0.1:{port}/ok",  # the backslash two parsers read differently
        "http://127.0.0.1:{port}\\@[::1]:{port6}/ok",
        "http://[::1]:{port6}/\\@127.0.0.1/ok",
        "http://user@127.0.0.1:{port}/ok",
        "http://127.0.0.1:{port}@[::1]:{port6}/ok",
        "http://2130706433:{port}/ok",  # 127.0.0.1 in decimal
        "http://0177.0.0.1:{port}/ok",  # and in octal
        "http://127.1:{port}/ok",
        "http://127.0.0.1.:{port}/ok",
        "http://127.0.0.1:{port}/o k",
        "http://127.0.0.1:{port}/ok\n",
        "http://１２７.0.0.1:{port}/ok",  # noqa: RUF001  fullwidth digits on purpose: a spoofed host
        "ftp://127.0.0.1:{port}/ok",
        "file:///etc/passwd",
        "//127.0.0.1:{port}/ok",
    ],
)
def test_allowlist_tricks_are_refused(template: str, port: int, port6: int) -> None:
    with pytest.raises(UrlNotAllowedError):
        check_url_allowed(template.format(port=port, port6=port6), SETTINGS.url_allowed_hosts)


def test_the_checked_url_is_what_gets_fetched(port: int) -> None:
    checked = check_url_allowed(f"HTTP://127.0.0.1:{port}/a/b?c=d#frag", SETTINGS.url_allowed_hosts)
    assert (checked.scheme, checked.host, checked.port, checked.target) == ("http", "127.0.0.1", port, "/a/b?c=d")


def test_redirects_are_not_followed(port: int) -> None:
    with pytest.raises(ImageSourceError, match="HTTP 302"):
        fetch_url(f"http://127.0.0.1:{port}/redirect", SETTINGS)


@pytest.mark.parametrize(
    ("path", "words"),
    [("/drip", "longer than 1 s"), ("/drip-headers", "longer than 1 s"), ("/endless", "1000-byte limit")],
)
@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.slow  # each waits out the 1 s deadline
def test_slow_or_endless_responses_are_cut_off_by_one_deadline(port: int, path: str, words: str, attempt: int) -> None:
    """Bodies without a length are the case that used to hang: http.client lets go of the socket then."""
    started = time.monotonic()
    with pytest.raises(ImageSourceError, match=words):
        fetch_url(f"http://127.0.0.1:{port}{path}", SETTINGS)
    assert time.monotonic() - started < 2.0
