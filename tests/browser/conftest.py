"""A real Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium) and a real host.

``make browser`` installs the two Debian packages; without them every browser test is skipped with
that reason. Playwright's own browser download cannot work here, hence the system Chromium.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from durable_host.monitor import MONITOR_PATH
from durable_host.testing import HostProcess

APPS = Path(__file__).resolve().parent.parent / "host" / "apps"
MANAGEMENT = "/runtime/webhooks/durabletask"
TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")


@pytest.fixture(scope="session")
def driver() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("Debian's chromium and chromium-driver are not installed: run `make browser`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


class Api:
    """The management API of one host, for starting instances and checking what the page did."""

    def __init__(self, host: HostProcess) -> None:
        self.host = host
        self.base = host.base_url
        self.mgmt = f"{host.base_url}{MANAGEMENT}"
        self.monitor = f"{host.base_url}{MONITOR_PATH}"
        self.session = requests.Session()

    def start(self, name: str, payload: Any = None, instance_id: str | None = None) -> str:
        """Start through the app's own HTTP starter (the SDK client's ``start_new``)."""
        params = {"instanceId": instance_id} if instance_id else None
        r = self.session.post(f"{self.base}/api/orchestrators/{name}", json=payload, params=params)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def status(self, instance_id: str, history: bool = False) -> requests.Response:
        params = {"showHistory": "true", "showHistoryOutput": "true"} if history else {}
        return self.session.get(f"{self.mgmt}/instances/{instance_id}", params=params)

    def wait(self, instance_id: str, until: tuple[str, ...] = TERMINAL, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.status(instance_id)
            body: dict[str, Any] | None = r.json() if r.content else None
            if body and body["runtimeStatus"] in until:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id}: {body and body['runtimeStatus']}\n{self.host.output[-3000:]}")
            time.sleep(0.05)

    def instances(self, **params: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            r = self.session.get(
                f"{self.mgmt}/instances", params={"top": "500", **params}, headers={"x-ms-continuation-token": token}
            )
            r.raise_for_status()
            found += r.json()
            token = r.headers.get("x-ms-continuation-token", "")
            if not token:
                return found


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    """The patterns test app (retries, failures, sub-orchestrations, timers, events) on a fresh hub."""
    with HostProcess(APPS / "patterns") as host:
        yield Api(host)


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - an element not there yet, or stale after a re-render
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {message or condition}")
        time.sleep(0.05)
