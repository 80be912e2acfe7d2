"""The HTTP client on its own: where the function key goes, and how every failure reads.

Key placement cannot be checked against the local host (it ignores keys, like Core Tools), so a
small recording HTTP server stands in for Azure here; everything else runs against the real host in
``test_end_to_end.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import requests

from classifier_cli.api import ApiError, ClassifierClient, error_message
from durable_host.testing import free_port

pytestmark = pytest.mark.unit


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with the status and JSON body queued for it, and records what came."""

    seen: ClassVar[list[tuple[str, str, dict[str, str]]]] = []
    answers: ClassVar[list[tuple[Any, ...]]] = []  # (status, JSON body or None[, headers])

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path, dict(self.headers)))
        status, body, *extra = type(self).answers.pop(0) if type(self).answers else (200, {})
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (extra[0] if extra else {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def recorder() -> Iterator[str]:
    Recorder.seen, Recorder.answers = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_key_is_a_header_on_api_routes_and_code_on_built_management_urls(recorder: str) -> None:
    client = ClassifierClient(recorder, key="s3cret")
    accepted = {"id": "abc", "statusQueryGetUri": "http://x/s"}
    Recorder.answers = [(202, accepted), (200, {}), (200, {}), (202, None), (200, {"instancesDeleted": 1})]
    client.submit({"models": ["resnet18"], "images": []})
    client.status("abc")
    handed_out = f"{recorder}/runtime/webhooks/durabletask/instances/abc?taskHub=H&code=SYSTEMKEY"
    client.status_at(handed_out)
    client.terminate("abc", "no longer needed")
    assert client.purge("abc") == 1
    (m1, p1, h1), (m2, p2, h2), (_, p3, _), (m4, p4, _), (m5, p5, _) = Recorder.seen
    assert (m1, p1, h1.get("x-functions-key")) == ("POST", "/api/tasks", "s3cret")
    assert m2 == "GET" and p2.startswith("/runtime/webhooks/durabletask/instances/abc?") and "code=s3cret" in p2
    assert "x-functions-key" not in h2
    assert p3 == "/runtime/webhooks/durabletask/instances/abc?taskHub=H&code=SYSTEMKEY"  # exactly as handed out
    assert m4 == "POST" and "/instances/abc/terminate?" in p4 and "reason=no+longer+needed" in p4
    assert m5 == "DELETE" and "code=s3cret" in p5


def test_the_system_key_goes_to_management_calls_and_the_function_key_to_api_routes(recorder: str) -> None:
    """On Azure the management API refuses a function key: it takes the durabletask_extension system key."""
    client = ClassifierClient(recorder, key="function-key", system_key="system-key")
    Recorder.answers = [(202, {"id": "abc", "statusQueryGetUri": "http://x/s"}), (200, {})]
    client.submit({"models": ["resnet18"], "images": []})
    client.status("abc")
    (_, p1, h1), (_, p2, h2) = Recorder.seen
    assert h1.get("x-functions-key") == "function-key" and "code=" not in p1
    assert "code=system-key" in p2 and "function-key" not in p2 and "x-functions-key" not in h2


def test_listing_follows_the_continuation_token(recorder: str) -> None:
    Recorder.answers = [
        (200, [{"instanceId": "a"}, {"instanceId": "b"}], {"x-ms-continuation-token": "page-2"}),
        (200, [{"instanceId": "c"}]),
    ]
    client = ClassifierClient(recorder)
    ids = [item["instanceId"] for item in client.instances(["Running", "Completed"], limit=10, page_size=2)]
    assert ids == ["a", "b", "c"]
    (_, first, first_headers), (_, _, second_headers) = Recorder.seen
    assert "runtimeStatus=Running%2CCompleted" in first and "top=2" in first
    assert "x-ms-continuation-token" not in first_headers
    assert second_headers.get("x-ms-continuation-token") == "page-2"


def test_a_submission_answer_without_id_and_status_url_is_an_api_error(recorder: str) -> None:
    Recorder.answers = [(202, {"accepted": True})]
    with pytest.raises(ApiError, match="no task id and status URL"):
        ClassifierClient(recorder).submit({})


def test_a_listing_that_is_not_a_list_is_an_api_error_not_a_crash(recorder: str) -> None:
    Recorder.answers = [(200, {"value": []})]
    with pytest.raises(ApiError, match="expected a JSON list of instances, got dict"):
        list(ClassifierClient(recorder).instances())


def response(status: int, body: Any) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made.reason = "Reason"
    made._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return made


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": "unknown model 'x'", "field": "models"}, "unknown model 'x'"),
        (
            404,
            {"Message": "Something went wrong", "ExceptionMessage": "No instance with ID 'x' found."},
            "No instance with ID 'x' found.",
        ),
        (
            400,
            {"Message": "Please provide value for 'createdTimeFrom' parameter."},
            "Please provide value for 'createdTimeFrom' parameter.",
        ),
        (502, b"Bad gateway from the proxy", "HTTP 502: Bad gateway from the proxy"),
        (500, b"", "HTTP 500 Reason"),
    ],
)
def test_error_messages_are_the_apis_own_words(status: int, body: Any, message: str) -> None:
    assert error_message(response(status, body)) == message


def test_an_http_error_becomes_an_api_error_with_that_message(recorder: str) -> None:
    Recorder.answers = [(400, {"error": "'top_k' must be an integer from 1 to 100, got 0"}), (404, None)]
    client = ClassifierClient(recorder)
    with pytest.raises(ApiError) as bad:
        client.submit({})
    assert (bad.value.status, bad.value.message) == (400, "'top_k' must be an integer from 1 to 100, got 0")
    with pytest.raises(ApiError) as missing:
        client.status("gone")
    assert missing.value.status == 404 and "no task with id 'gone'" in missing.value.message


def test_a_refused_connection_says_where_and_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ApiError) as refused:
        ClassifierClient(url).status("abc")
    assert refused.value.status is None
    assert refused.value.message == f"cannot reach {url} — is the app running? (make run)"
