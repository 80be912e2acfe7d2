"""Rewind through the management API: every failed or unfinished task of a fan-out runs again."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.host


def rewind(api, iid: str) -> None:
    r = api.session.post(f"{api.mgmt}/instances/{iid}/rewind", params={"reason": "x"})
    assert r.status_code == 202, r.text


def test_rewind_of_a_fan_out_reruns_every_failed_activity(api, tmp_path):
    # The first failure fails the orchestration; the other five fail later, after it is Failed.
    iid = api.start("fan_out_failing", {"dir": str(tmp_path), "step": 0.3})["id"]
    failed = api.wait(iid)
    assert failed["runtimeStatus"] == "Failed", failed
    rewind(api, iid)  # the other first attempts are still running: their failures come late
    body = api.wait(iid, timeout=30)
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == [f"ok {i}" for i in range(6)]
    time.sleep(1.8)  # every late first-attempt failure has arrived by now, and was ignored
    assert api.status(iid).json()["runtimeStatus"] == "Completed"


def test_rewind_after_every_failure_arrived(api, tmp_path):
    iid = api.start("fan_out_failing", {"dir": str(tmp_path), "step": 0.05})["id"]
    assert api.wait(iid)["runtimeStatus"] == "Failed"
    time.sleep(0.5)  # all six failures have reached the Failed instance
    rewind(api, iid)
    body = api.wait(iid, timeout=30)
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == [f"ok {i}" for i in range(6)]
    events = api.status(iid, showHistory="true").json()["historyEvents"]
    assert [e["EventType"] for e in events].count("TaskFailed") == 0
    assert any(e["EventType"] == "GenericEvent" for e in events)


def test_rewind_reruns_a_failed_sub_orchestration(api):
    iid = api.start("rewindable_parent")["id"]
    assert api.wait(iid)["runtimeStatus"] == "Failed"
    rewind(api, iid)
    body = api.wait(iid)
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == "ok after 2"


def test_rewind_rearms_a_timer_that_fired_while_failed(api):
    iid = api.start("rewindable_timer")["id"]
    assert api.wait(iid)["runtimeStatus"] == "Failed"
    time.sleep(1.0)  # the timer fires into the Failed instance, which drops it
    rewind(api, iid)
    body = api.wait(iid)
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == "ok after 2"
