"""Management API answers that must match the Durable extension's ``HttpApiHandler`` exactly.

Each test pins one behaviour the extension has (status code, header or body) where the host
once differed; see "Differences from Azure" in ``durable_host/README.md`` for the deliberate ones.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.host


def new_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex}"


def test_wait_mode_answers_200_with_the_status_of_a_failed_orchestration(api):
    r = api.session.post(f"{api.mgmt}/orchestrators/failing_orch", params={"timeout": "10", "pollingInterval": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["runtimeStatus"] == "Failed"


def test_wait_mode_needs_both_timeout_and_polling_interval(api):
    for params in ({"timeout": "10"}, {"pollingInterval": "1"}):
        r = api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in", json=1, params=params)
        assert r.status_code == 202, (params, r.text)
        assert api.wait(r.json()["id"])["output"] == 0


def test_unusable_wait_parameters_are_refused_before_anything_starts(api):
    for params in (
        {"timeout": "1", "pollingInterval": "5"},
        {"timeout": "abc"},
        {"timeout": "10", "pollingInterval": "abc"},
    ):
        iid = new_id("wait")
        r = api.session.post(f"{api.mgmt}/orchestrators/wait_forever/{iid}", params=params)
        assert r.status_code == 400, (params, r.text)
        assert api.status(iid).status_code == 404, params


def test_rewind_of_a_finished_instance_is_gone(api):
    completed = api.run("hello_sequence")["instanceId"]
    terminated = api.start("wait_forever")["id"]
    api.wait(terminated, until=("Running",))
    api.session.post(f"{api.mgmt}/instances/{terminated}/terminate")
    api.wait(terminated)
    for iid in (completed, terminated):
        r = api.session.post(f"{api.mgmt}/instances/{iid}/rewind", params={"reason": "again"})
        assert (r.status_code, r.content) == (410, b""), iid


def test_instance_ids_the_extension_refuses(api):
    for iid in ("@entity-like", "a#b", "a?b", "a\\b", "a\x01b", "x" * 257):
        r = api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in/{quote(iid, safe='')}", json=1)
        assert r.status_code == 400, (iid, r.text)
        assert api.status(quote(iid, safe="")).status_code == 404, iid
    longest = "y" * 224 + uuid.uuid4().hex  # 256 characters: the longest allowed
    r = api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in/{longest}", json=1)
    assert r.status_code == 202
    api.wait(longest)


def test_restart_of_an_unknown_id_is_a_bad_request(api):
    r = api.session.post(f"{api.mgmt}/instances/{new_id('nobody')}/restart")
    assert r.status_code == 400
    assert r.json()["Message"] == "InstanceId does not match a valid orchestration instance."


def test_raise_event_looks_up_the_instance_before_the_content_type(api):
    finished = api.run("fan_out_fan_in", 1)["instanceId"]
    plain = {"Content-Type": "text/plain"}
    for iid, expected in ((new_id("nobody"), 404), (finished, 410)):
        r = api.session.post(f"{api.mgmt}/instances/{iid}/raiseEvent/go", data=b"1", headers=plain)
        assert r.status_code == expected, iid


def test_route_segments_are_matched_case_insensitively(api):
    iid = new_id("case")
    r = api.session.post(f"{api.mgmt}/Orchestrators/wait_forever/{iid}")
    assert r.status_code == 202
    api.wait(iid, until=("Running",))
    assert api.session.get(f"{api.mgmt}/INSTANCES/{iid}").status_code == 202
    assert api.session.get(f"{api.mgmt}/Instances/").status_code == 200
    assert api.session.get(f"{api.base}/Runtime/Webhooks/DurableTask/instances/{iid}").status_code == 202
    r = api.session.post(f"{api.mgmt}/instances/{iid}/RAISEEVENT/go", json="now")
    assert r.status_code == 202
    assert api.wait(iid)["output"] == {"go": "now"}
    assert (
        api.session.post(
            f"{api.mgmt}/instances/{iid}/Restart", params={"restartWithNewInstanceId": "false"}
        ).status_code
        == 202
    )
    api.wait(iid, until=("Running",))
    assert api.session.post(f"{api.mgmt}/instances/{iid}/Terminate").status_code == 202
    api.wait(iid)


def test_not_found_and_gone_have_empty_bodies(api):
    s, m = api.session, api.mgmt
    finished = api.run("fan_out_fan_in", 1)["instanceId"]
    unknown = new_id("nobody")
    responses = [
        s.post(f"{m}/instances/{unknown}/terminate"),
        s.post(f"{m}/instances/{finished}/terminate"),
        s.post(f"{m}/instances/{finished}/suspend"),
        s.post(f"{m}/instances/{unknown}/resume"),
        s.post(f"{m}/instances/{unknown}/rewind"),
        s.post(f"{m}/instances/{unknown}/raiseEvent/go", json=1),
        s.post(f"{m}/instances/{finished}/raiseEvent/go", json=1),
        s.delete(f"{m}/instances/{unknown}"),
        s.delete(
            f"{m}/instances/",
            params={"createdTimeFrom": "2000-01-01T00:00:00Z", "createdTimeTo": "2000-01-02T00:00:00Z"},
        ),
        s.get(f"{m}/no/such/route"),
        s.put(f"{m}/instances/{finished}"),
    ]
    for r in responses:
        assert r.status_code in (404, 410), (r.request.method, r.url, r.status_code)
        assert r.content == b"", (r.request.method, r.url, r.text)


def test_list_always_sends_a_continuation_token_header(api):
    prefix = new_id("token")
    api.run("fan_out_fan_in", 1)
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix})
    assert r.status_code == 200 and r.json() == []
    assert r.headers["x-ms-continuation-token"] == ""


def test_start_and_restart_answers_have_no_rewind_uri(api):
    started = api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in", json=1)
    assert started.status_code == 202
    iid = started.json()["id"]
    api.wait(iid)
    restarted = api.session.post(f"{api.mgmt}/instances/{iid}/restart")
    assert restarted.status_code == 202
    for body in (started.json(), restarted.json()):
        assert list(body) == [
            "id",
            "statusQueryGetUri",
            "sendEventPostUri",
            "terminatePostUri",
            "purgeHistoryDeleteUri",
            "restartPostUri",
            "suspendPostUri",
            "resumePostUri",
        ]
    api.wait(restarted.json()["id"])


def test_history_lists_unfinished_tasks_and_keeps_input_text(api):
    iid = api.start("intervals")["id"]
    deadline = time.monotonic() + 10
    pending: list[dict] = []
    while not pending and time.monotonic() < deadline:
        body = api.status(iid, showHistory="true").json()
        pending = [e for e in body.get("historyEvents") or [] if e["EventType"] == "TaskScheduled"]
    assert pending, "no TaskScheduled event seen while the activities ran"
    assert pending[0]["Name"] == "busy_interval" and pending[0]["Input"] == "0.3"
    assert not {"EventId", "IsPlayed"} & set(pending[0])
    api.wait(iid)
    events = api.status(iid, showHistory="true").json()["historyEvents"]
    assert "TaskScheduled" not in {e["EventType"] for e in events}
    completed = [e for e in events if e["EventType"] == "TaskCompleted"]
    assert len(completed) == 6 and all(e["Input"] == "0.3" for e in completed)

    fan = api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in", json=2).json()["id"]
    api.wait(fan)
    started = api.status(fan, showHistory="true").json()["historyEvents"][0]
    assert (started["EventType"], started["Input"]) == ("ExecutionStarted", "2")


def test_query_values_the_extension_cannot_parse_are_ignored(api):
    prefix = new_id("lenient")
    done = f"{prefix}-done"
    api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in/{done}", json=1)
    api.wait(done)
    running = api.start("wait_forever", instance_id=f"{prefix}-running")["id"]
    api.wait(running, until=("Running",))
    r = api.status(done, showHistory="yes", showInput="no")
    assert r.status_code == 200
    assert "historyEvents" not in r.json() and r.json()["input"] == 1
    for params in (
        {"top": "many"},
        {"runtimeStatus": "Sleeping"},
        {"runtimeStatus": "completed"},
        {"createdTimeFrom": "yesterday"},
    ):
        r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, **params})
        assert r.status_code == 200, (params, r.text)
        assert sorted(s["instanceId"] for s in r.json()) == [done, running], params
    r = api.session.get(
        f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "Sleeping,Completed"}
    )
    assert [s["instanceId"] for s in r.json()] == [done]
    api.session.post(f"{api.mgmt}/instances/{running}/terminate")


def test_query_parameter_names_match_in_any_case(api):
    """The extension reads its query with ``StringComparer.OrdinalIgnoreCase``."""
    prefix = new_id("case")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    done = api.start("hello_sequence", instance_id=f"{prefix}-done")["id"]
    failed = f"{prefix}-failed"
    api.session.post(f"{api.mgmt}/orchestrators/failing_orch/{failed}")
    api.wait(done)
    api.wait(failed)
    assert "historyEvents" in api.status(done, showhistory="TRUE").json()
    assert api.status(failed, RETURNINTERNALSERVERERRORONFAILURE="true").status_code == 500
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceidprefix": prefix, "RuntimeStatus": "Failed"})
    assert [s["instanceId"] for s in r.json()] == [failed]
    r = api.session.get(f"{api.mgmt}/instances/", params={"InstanceIdPrefix": prefix, "TOP": "1"})
    assert len(r.json()) == 1 and r.headers["x-ms-continuation-token"]
    r = api.session.delete(f"{api.mgmt}/instances/", params={"createdtimefrom": since, "runtimestatus": "Failed"})
    assert r.status_code == 200, r.text
    assert api.status(failed).status_code == 404


def test_a_status_number_no_status_has_matches_nothing(api):
    """``Enum.TryParse`` takes ``99``: the filter is there, and no instance has that status."""
    prefix = new_id("undefined")
    done = api.start("hello_sequence", instance_id=f"{prefix}-done")["id"]
    api.wait(done)
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "99"})
    assert (r.status_code, r.json()) == (200, [])
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "9" * 5000})
    assert r.status_code == 200 and len(r.json()) == 1  # no Int32: no filter, as an unknown name
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "99,1"})
    assert [s["instanceId"] for s in r.json()] == [done]
    r = api.session.delete(
        f"{api.mgmt}/instances/", params={"createdTimeFrom": "2020-01-01T00:00:00Z", "runtimeStatus": "99"}
    )
    assert r.status_code == 404
    assert api.status(done).status_code == 200
