"""Orchestration versioning: host.json ``defaultVersion``, explicit versions, and where they show."""

from __future__ import annotations

import pytest
import requests

from durable_host.testing import HostProcess

from .conftest import APPS, Api

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory):
    with HostProcess(APPS / "versioned", hub_dir=tmp_path_factory.mktemp("hub")) as host:
        yield host


@pytest.fixture()
def vapi(versioned: HostProcess) -> Api:
    return Api(versioned)


def start(api: Api, name: str, version: str | None = None, payload: object = None) -> str:
    params = {"version": version} if version is not None else None
    r = api.session.post(f"{api.mgmt}/orchestrators/{name}", params=params, json=payload)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_new_orchestration_gets_the_default_version(vapi):
    body = vapi.wait(start(vapi, "version_parent"))
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == {"own": "2.0", "default_child": "2.0", "explicit_child": "1.5"}
    assert body["version"] == "2.0"


def test_explicit_version_wins_over_the_default(vapi):
    body = vapi.wait(start(vapi, "version_parent", version="3.1"))
    assert body["output"]["own"] == "3.1"
    assert body["output"]["default_child"] == "2.0"  # sub-orchestrations start at the default
    assert body["version"] == "3.1"


def test_version_is_in_listed_statuses(vapi):
    iid = start(vapi, "version_child", version="4.0")
    vapi.wait(iid)
    listed = {b["instanceId"]: b for b in vapi.session.get(f"{vapi.mgmt}/instances").json()}
    assert listed[iid]["version"] == "4.0"
    assert list(listed[iid])[:3] == ["name", "instanceId", "version"]


def test_continue_as_new_and_restart_keep_the_version(vapi):
    iid = start(vapi, "version_can", version="5.0")
    assert vapi.wait(iid)["output"] == ["5.0", "5.0", "5.0"]
    r = vapi.session.post(f"{vapi.mgmt}/instances/{iid}/restart")
    assert r.status_code == 202, r.text
    restarted = vapi.wait(r.json()["id"])
    assert restarted["output"] == ["5.0", "5.0", "5.0"]
    assert restarted["version"] == "5.0"


def test_version_survives_a_host_restart(versioned, vapi):
    iid = start(vapi, "version_wait", version="6.0")
    vapi.wait(iid, until=("Running",))
    versioned.stop()
    versioned.start()
    assert vapi.status(iid).json()["version"] == "6.0"
    r = vapi.session.post(f"{vapi.mgmt}/instances/{iid}/raiseEvent/go", json={"ok": True})
    assert r.status_code == 202, r.text
    assert vapi.wait(iid)["output"] == "6.0"


def test_without_default_version_the_status_has_none(api):
    body = api.run("hello_sequence")
    assert "version" not in body
    r = requests.post(f"{api.mgmt}/orchestrators/hello_sequence", params={"version": "7"})
    assert api.wait(r.json()["id"])["version"] == "7"
