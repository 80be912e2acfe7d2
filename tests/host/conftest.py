"""Fixtures for the durable_host tests: one real host process per app, shared per session."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from durable_host.testing import HostProcess

APPS = Path(__file__).parent / "apps"


class Api:
    """Small HTTP helper around a running host and the patterns app's starter functions."""

    def __init__(self, host: HostProcess):
        self.host = host
        self.base = host.base_url
        self.mgmt = f"{host.base_url}/runtime/webhooks/durabletask"
        self.session = requests.Session()

    def start(self, name: str, payload: Any = None, instance_id: str | None = None) -> dict:
        """Start through the app's own HTTP starter (the SDK client's start_new)."""
        params = {"instanceId": instance_id} if instance_id else None
        r = self.session.post(f"{self.base}/api/orchestrators/{name}", json=payload, params=params)
        assert r.status_code == 202, r.text
        return r.json()

    def status(self, instance_id: str, **params: str) -> requests.Response:
        return self.session.get(f"{self.mgmt}/instances/{instance_id}", params=params)

    def wait(
        self, instance_id: str, timeout: float = 20.0, until: tuple = ("Completed", "Failed", "Terminated", "Canceled")
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.status(instance_id)
            body = r.json() if r.content else None
            if body and body["runtimeStatus"] in until:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{instance_id} still {body and body['runtimeStatus']}:\n{self.host.output[-4000:]}"
                )
            time.sleep(0.05)

    def run(self, name: str, payload: Any = None, timeout: float = 20.0) -> dict:
        return self.wait(self.start(name, payload)["id"], timeout)

    def client(self, op: str, **args: Any) -> requests.Response:
        """Call one DurableOrchestrationClient method through the app's client_ops function."""
        return self.session.post(f"{self.base}/api/client/{op}", json=args)

    def client_result(self, op: str, **args: Any) -> Any:
        r = self.client(op, **args)
        assert r.status_code == 200, r.text
        return r.json()["result"]


@pytest.fixture(scope="session")
def patterns_host():
    with HostProcess(APPS / "patterns") as host:
        yield host


@pytest.fixture()
def api(patterns_host: HostProcess) -> Api:
    return Api(patterns_host)
