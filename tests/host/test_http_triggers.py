"""HTTP triggers: routes, constraints, methods, request and response mapping."""

from __future__ import annotations

import pytest

from durable_host.http_triggers import request_path
from durable_host.server import MAX_REQUEST_BYTES
from durable_host.testing import wait_for

pytestmark = pytest.mark.host


def test_route_parameters_and_constraints(api):
    r = api.session.get(f"{api.base}/api/items/42/widget")
    assert r.status_code == 200
    assert r.json() == {"route": {"id": "42", "name": "widget"}, "method": "GET"}
    r = api.session.put(f"{api.base}/api/items/7")
    assert r.json() == {"route": {"id": "7"}, "method": "PUT"}
    assert api.session.get(f"{api.base}/api/items/abc").status_code == 404  # :int
    assert api.session.get(f"{api.base}/api/items/1/x1").status_code == 404  # :alpha
    assert api.session.post(f"{api.base}/api/items/1").status_code == 404  # method


def test_an_encoded_slash_stays_in_its_segment(api):
    """Kestrel decodes every escape of the path but ``%2F``, which would change its segments."""
    r = api.session.get(f"{api.base}/api/files/a%2Fb%20c/d/e%2F%252F")
    assert r.status_code == 200
    assert r.json() == {"folder": "a%2Fb c", "rest": "d/e%2F%2F"}


def test_request_path_decodes_all_but_encoded_slashes():
    assert request_path("/api/x%20y/a%2Fb%2fc/%25/%E2%82%AC") == "/api/x y/a%2Fb%2fc/%/€"


def test_a_body_over_azure_s_100_mb_is_refused_with_413(api):
    assert api.session.post(f"{api.base}/api/text", data=b"x" * MAX_REQUEST_BYTES).status_code == 200
    assert api.session.post(f"{api.base}/api/text", data=b"x" * (MAX_REQUEST_BYTES + 1)).status_code == 413


def test_request_mapping_and_async_function_with_context(api):
    r = api.session.post(f"{api.base}/api/echo?a=1&b=two", data=b"payload", headers={"x-test": "hdr"})
    assert r.status_code == 201
    assert r.headers["x-echo"] == "yes"
    body = r.json()
    assert body["method"] == "POST"
    assert body["params"] == {"a": "1", "b": "two"}
    assert body["header"] == "hdr"
    assert body["body"] == "payload"
    assert body["url"].endswith("/api/echo?a=1&b=two")
    assert body["function_name"] == "echo"
    assert body["invocation_id"]


def test_string_return_and_blueprint_route(api):
    r = api.session.get(f"{api.base}/api/text")
    assert (r.status_code, r.text) == (200, "just a string")
    assert api.session.get(f"{api.base}/api/blueprint/ping").text == "pong from blueprint"


def test_function_exception_is_500_and_logged(api):
    r = api.session.get(f"{api.base}/api/boom")
    assert r.status_code == 500
    # the host's log reaches this process through a pipe, possibly after the answer did
    wait_for(
        lambda: "RuntimeError: http function failed on purpose" in api.host.output, "the logged error", api.host, 15
    )


def test_unknown_route_is_404(api):
    assert api.session.get(f"{api.base}/api/nope").status_code == 404
