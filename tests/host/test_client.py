"""The SDK's DurableOrchestrationClient, used for every call it has, against the host."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.host


def test_start_status_and_history(api):
    iid = api.client_result("start", name="hello_sequence", instance_id=f"c-{uuid.uuid4().hex}")
    assert iid.startswith("c-")
    api.wait(iid)
    status = api.client_result("status", instance_id=iid, show_history=True, show_history_output=True, show_input=True)
    assert status["runtimeStatus"] == "Completed"
    events = status["historyEvents"]
    assert events[0]["EventType"] == "ExecutionStarted"
    assert events[0]["FunctionName"] == "hello_sequence"
    completed = [e for e in events if e["EventType"] == "TaskCompleted"]
    assert [e["Result"] for e in completed][:2] == ["Hello Tokyo", "Hello Seattle"]
    assert completed[0]["FunctionName"] == "say_hello"
    assert events[-1]["EventType"] == "ExecutionCompleted"
    assert events[-1]["OrchestrationStatus"] == "Completed"


def test_start_with_input_is_seen_as_json_text(api):
    iid = api.client_result("start", name="fan_out_fan_in", input=3)
    body = api.wait(iid)
    assert body["output"] == 6
    assert body["input"] == "3"


def test_status_of_unknown_instance_is_empty(api):
    assert api.client_result("status", instance_id="does-not-exist") is None


def test_status_all_and_by_filters(api):
    since = (datetime.now(UTC) - timedelta(seconds=1)).replace(tzinfo=None)
    iid = api.client_result("start", name="wait_forever")
    api.wait(iid, until=("Running",))
    everything = api.client_result("status_all")
    assert any(s["instanceId"] == iid for s in everything)
    running = api.client_result("status_by", statuses=["Running"], **{"from": since.isoformat()})
    assert iid in [s["instanceId"] for s in running]
    assert all(s["runtimeStatus"] == "Running" for s in running)
    completed = api.client_result("status_by", statuses=["Completed"], **{"from": since.isoformat()})
    assert iid not in [s["instanceId"] for s in completed]
    api.client_result("terminate", instance_id=iid)


def test_raise_event_terminate_suspend_resume_on_unknown_raise(api):
    for op in ("raise_event", "terminate", "suspend", "resume"):
        r = api.client(op, instance_id="nobody-home", event="x")
        assert r.status_code == 500, (op, r.text)  # the SDK raised: 404 from the host


def test_terminate_completed_instance_is_accepted(api):
    body = api.run("hello_sequence")
    # 410 is a success for terminate in the SDK
    assert api.client_result("terminate", instance_id=body["instanceId"]) is None


def test_rewind_failed_orchestration(api):
    iid = api.start("rewindable")["id"]
    body = api.wait(iid)
    assert body["runtimeStatus"] == "Failed"
    assert api.client_result("rewind", instance_id=iid, reason="try again") is None
    body = api.wait(iid)
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == "ok after 2"


def test_rewind_of_completed_instance_raises(api):
    body = api.run("hello_sequence")
    r = api.client("rewind", instance_id=body["instanceId"])
    assert r.status_code == 500


def test_restart_with_and_without_new_id(api):
    iid = api.run("fan_out_fan_in", 4)["instanceId"]
    restarted = api.client_result("restart", instance_id=iid, new_id=True)
    new_id = restarted["id"]
    assert new_id != iid
    assert api.wait(new_id)["output"] == 12
    same = api.client_result("restart", instance_id=iid, new_id=False)
    assert same["id"] == iid
    assert api.wait(iid)["output"] == 12


def test_purge_one_and_by_filter(api):
    iid = api.run("hello_sequence")["instanceId"]
    assert api.client_result("purge", instance_id=iid) == 1
    assert api.status(iid).status_code == 404
    assert api.client_result("purge", instance_id=iid) == 0
    since = datetime.now(UTC).replace(tzinfo=None)
    ids = [api.run("fan_out_fan_in", 1)["instanceId"] for _ in range(2)]
    deleted = api.client_result("purge_by", statuses=["Completed"], **{"from": since.isoformat()})
    assert deleted >= 2
    assert all(api.status(i).status_code == 404 for i in ids)


def test_purge_from_datetime_min_as_microsofts_sample_does(api):
    """The SDK writes ``datetime.min`` with ``strftime``, which on Linux gives the year as ``1``."""
    iid = api.run("hello_sequence")["instanceId"]
    to = (datetime.now(UTC) + timedelta(seconds=1)).replace(tzinfo=None)
    deleted = api.client_result(
        "purge_by", statuses=["Completed"], **{"from": datetime.min.isoformat(), "to": to.isoformat()}
    )
    assert deleted >= 1
    assert api.status(iid).status_code == 404


def test_wait_for_completion_or_check_status(api):
    iid = api.client_result("start", name="fan_out_fan_in", input=5)
    r = api.client("wait", instance_id=iid, timeout_ms=10000)
    assert (r.status_code, r.json()) == (200, 20)
    iid = api.client_result("start", name="wait_forever")
    r = api.client("wait", instance_id=iid, timeout_ms=300)
    assert r.status_code == 202
    assert r.json()["id"] == iid
    assert r.headers["Location"] == r.json()["statusQueryGetUri"]
    failed = api.client_result("start", name="failing_orch")
    r = api.client("wait", instance_id=failed, timeout_ms=10000)
    assert r.status_code == 500 and r.json()["runtimeStatus"] == "Failed"
    api.client_result("terminate", instance_id=iid)


def test_management_payload_points_at_the_host(api):
    payload = api.client_result("payload", instance_id="abc")
    assert payload["id"] == "abc"
    assert payload["statusQueryGetUri"].startswith(f"{api.base}/runtime/webhooks/durabletask/instances/abc?")
