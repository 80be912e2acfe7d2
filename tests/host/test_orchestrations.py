"""Every orchestration pattern end to end through HTTP against a real host process."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.host


def test_hello_sequence_with_blueprint_activity(api):
    body = api.run("hello_sequence")
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == [
        "Hello Tokyo",
        "Hello Seattle",
        "Hello London",
        "Hello Paris",
        "Hello Cairo",
        "BLUEPRINT!",
    ]


def test_replay_does_not_repeat_app_log_lines(api):
    iid = api.start("hello_sequence")["id"]
    api.wait(iid)
    log = api.host.wait_for_output(f"{iid}: Function 'hello_sequence (Orchestrator)' completed.")
    assert log.count("hello_sequence running (unguarded log line)") >= 1
    # six episodes ran for this instance, the unguarded line must appear once per instance
    started = log.count("Function 'hello_sequence (Orchestrator)' started")
    assert log.count("hello_sequence running (unguarded log line)") == started


def test_fan_out_fan_in_batches_completions(api):
    before = api.host.output.count("Executed 'Functions.fan_out_fan_in'")
    body = api.run("fan_out_fan_in", 200)
    assert body["output"] == sum(2 * i for i in range(200))
    assert body["customStatus"] == {"done": 200}
    episodes = api.host.output.count("Executed 'Functions.fan_out_fan_in'") - before
    assert episodes < 50, f"{episodes} episodes for 200 activities: completions are not batched"


def test_activity_retry_succeeds_after_failures(api):
    key = uuid.uuid4().hex
    body = api.run("retry_orch", {"key": key, "fail_times": 2, "max_attempts": 3})
    assert body["output"] == "ok after 3"


def test_activity_retry_exhaustion_reports_extension_message(api):
    key = uuid.uuid4().hex
    body = api.run("retry_orch", {"key": key, "fail_times": 5, "max_attempts": 2})
    error = body["output"]["error"]
    assert error.startswith("Activity function 'flaky' failed: ValueError: flaky failure 2")


def test_parallel_retries_and_plain_activities_in_one_batch(api):
    """Retry ids allocated while several completions arrive in one episode stay correct."""
    key = uuid.uuid4().hex
    body = api.run("parallel_retry", {"n": 8, "key": key}, timeout=30)
    assert body["runtimeStatus"] == "Completed", body
    expected = []
    for i in range(8):
        expected += [f"ok after {i % 4 + 1}", 2 * i]
    assert body["output"] == {"first": expected, "second": 200}


def test_activity_failure_message(api):
    body = api.run("activity_error")
    assert body["output"].startswith("Activity function 'flaky' failed: ValueError: flaky failure 1 \n ")


def test_timer(api):
    body = api.run("timer_orch", 1)
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] >= 1.0


def test_external_event_wins_and_timer_is_cancelled(api):
    iid = api.start("event_orch", {"timeout": 30})["id"]
    api.wait(iid, until=("Running",))
    r = api.session.post(f"{api.mgmt}/instances/{iid}/raiseEvent/Approval", json={"ok": True})
    assert r.status_code == 202
    body = api.wait(iid)
    assert body["output"] == {"approval": {"ok": True}}
    assert body["customStatus"] == "approved"


def test_timer_wins_over_missing_event(api):
    body = api.run("event_orch", {"timeout": 1})
    assert body["output"] == {"approval": None}
    assert body["customStatus"] == "timeout"


def test_events_raised_before_the_wait_are_buffered(api):
    iid = api.start("two_events", 1)["id"]
    api.client_result("raise_event", instance_id=iid, event="B", data="second")
    api.client_result("raise_event", instance_id=iid, event="A", data={"first": 1})
    body = api.wait(iid)
    # The extension re-serialises the client's JSON-string body: the quirk of issue #295.
    assert body["output"] == ['{"first": 1}', '"second"']


def test_sub_orchestrations_with_retry_and_failure(api):
    key = uuid.uuid4().hex
    iid = api.start("parent_orch", key)["id"]
    body = api.wait(iid, timeout=30)
    assert body["runtimeStatus"] == "Completed", body
    out = body["output"]
    assert out["ok"] == "Hello child"
    assert out["named"] == "Hello named"
    assert out["retried"] == "ok after 3"
    assert out["failed"].startswith("Orchestrator function 'child_orch' failed: child failed: on purpose")
    named = api.status(f"{iid}-named").json()
    assert named["runtimeStatus"] == "Completed" and named["output"] == "Hello named"


def test_continue_as_new(api):
    body = api.run("counter_can", 0)
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == 3
    assert body["input"] == "3"


def test_deterministic_uuid_and_time(api):
    body = api.run("determinism")
    assert body["output"] == {"same_uuid": True, "same_time": True, "distinct": True, "is_replaying_after_yield": False}


def test_orchestrator_failure(api):
    body = api.run("failing_orch")
    assert body["runtimeStatus"] == "Failed"
    assert body["output"] == "Orchestrator function 'failing_orch' failed: kaboom"
    r = api.status(body["instanceId"], returnInternalServerErrorOnFailure="true")
    assert r.status_code == 500


def test_terminate_suspend_resume(api):
    iid = api.start("wait_forever")["id"]
    api.wait(iid, until=("Running",))
    assert api.client_result("suspend", instance_id=iid, reason="pause") is None
    api.wait(iid, until=("Suspended",))
    api.client_result("raise_event", instance_id=iid, event="go", data=1)
    assert api.status(iid).json()["runtimeStatus"] == "Suspended"  # held while suspended
    api.client_result("resume", instance_id=iid, reason="go on")
    assert api.wait(iid)["output"] == {"go": "1"}  # JSON text: the client double-encodes

    iid = api.start("wait_forever")["id"]
    api.wait(iid, until=("Running",))
    api.client_result("terminate", instance_id=iid, reason="enough")
    body = api.wait(iid)
    assert body["runtimeStatus"] == "Terminated"
    assert body["output"] == "enough"
    assert body["customStatus"] == {"stage": "waiting"}


def test_call_http(api):
    body = api.run("http_call", f"{api.base}/api/text")
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"]["statusCode"] == 200
    assert body["output"]["content"] == "just a string"
