"""Microsoft's HTTP management API: status codes, headers, bodies and bad requests."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.host


def test_start_returns_check_status_payload(api):
    iid = f"m-{uuid.uuid4().hex}"
    r = api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in/{iid}", json=3)
    assert r.status_code == 202
    body = r.json()
    assert body["id"] == iid
    assert r.headers["Location"] == body["statusQueryGetUri"]
    assert r.headers["Retry-After"] == "10"
    for key in (
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
    ):
        assert iid in body[key]
    done = api.wait(iid)
    assert done["output"] == 6
    assert done["input"] == 3  # a raw JSON body is the input token itself


def test_status_codes_while_running_and_when_done(api):
    iid = api.start("wait_forever")["id"]
    api.wait(iid, until=("Running",))
    r = api.status(iid)
    assert r.status_code == 202
    assert r.headers["Retry-After"] == "5"
    assert iid in r.headers["Location"]
    assert r.json()["customStatus"] == {"stage": "waiting"}
    r = api.session.post(f"{api.mgmt}/instances/{iid}/raiseEvent/go", json="now")
    assert r.status_code == 202
    body = api.wait(iid)
    assert body["output"] == {"go": "now"}
    r = api.status(iid)
    assert r.status_code == 200
    assert r.json()["createdTime"].endswith("Z") and "." not in r.json()["createdTime"]


def test_show_input_and_history_flags(api):
    iid = api.run("fan_out_fan_in", 2)["instanceId"]
    assert api.status(iid).json()["input"] == "2"
    assert api.status(iid, showInput="false").json()["input"] is None
    body = api.status(iid, showHistory="True").json()  # Python-style booleans are accepted
    completed = [e for e in body["historyEvents"] if e["EventType"] == "TaskCompleted"]
    assert len(completed) == 2 and "Result" not in completed[0]
    assert completed[0]["FunctionName"] == "double"
    body = api.status(iid, showHistory="true", showHistoryOutput="true").json()
    results = sorted(e["Result"] for e in body["historyEvents"] if e["EventType"] == "TaskCompleted")
    assert results == [0, 2]
    types = {e["EventType"] for e in body["historyEvents"]}
    assert not types & {"OrchestratorStarted", "OrchestratorCompleted", "TaskScheduled"}


def test_list_filters_and_paging(api):
    prefix = f"page-{uuid.uuid4().hex[:8]}-"
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(5):
        api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in/{prefix}{i}", json=1)
    for i in range(5):
        api.wait(f"{prefix}{i}")
    seen, token, pages = [], None, 0
    while True:
        headers = {"x-ms-continuation-token": token} if token else {}
        r = api.session.get(
            f"{api.mgmt}/instances",
            headers=headers,
            params={
                "instanceIdPrefix": prefix,
                "top": "2",
                "runtimeStatus": "Completed,Failed",
                "createdTimeFrom": since,
            },
        )
        assert r.status_code == 200
        seen += [s["instanceId"] for s in r.json()]
        pages += 1
        token = r.headers.get("x-ms-continuation-token")
        if not token:
            break
    assert sorted(seen) == [f"{prefix}{i}" for i in range(5)]
    assert pages == 3
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "Running"})
    assert r.json() == []
    # .NET's Enum.TryParse reads the enum's numbers too: 1 is Completed, 0 Running
    r = api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "1"})
    assert len(r.json()) == 5
    assert (
        api.session.get(f"{api.mgmt}/instances/", params={"instanceIdPrefix": prefix, "runtimeStatus": "0"}).json()
        == []
    )


def test_purge_by_filter(api):
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.01)
    ids = [api.run("fan_out_fan_in", 1)["instanceId"] for _ in range(2)]
    r = api.session.delete(f"{api.mgmt}/instances/", params={"createdTimeFrom": since, "runtimeStatus": "Completed"})
    assert r.status_code == 200
    assert r.json()["instancesDeleted"] >= 2
    assert all(api.status(i).status_code == 404 for i in ids)
    r = api.session.delete(f"{api.mgmt}/instances/", params={"createdTimeFrom": since, "runtimeStatus": "Completed"})
    assert r.status_code == 404


def test_an_unfinished_instance_is_never_purged(api):
    """Only Completed, Failed and Terminated instances are purged, as Microsoft documents; asking for another
    status or for a running instance by id deletes nothing (404, as the extension answers 0 deleted)."""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    iid = api.start("wait_forever")["id"]
    api.wait(iid, until=("Running",))
    assert api.session.delete(f"{api.mgmt}/instances/{iid}").status_code == 404
    r = api.session.delete(f"{api.mgmt}/instances/", params={"createdTimeFrom": since, "runtimeStatus": "Running"})
    assert r.status_code == 404
    assert api.status(iid).status_code == 202
    api.session.post(f"{api.mgmt}/instances/{iid}/terminate")
    api.wait(iid)
    assert api.session.delete(f"{api.mgmt}/instances/{iid}").json() == {"instancesDeleted": 1}


def test_start_and_wait_mode(api):
    r = api.session.post(
        f"{api.mgmt}/orchestrators/fan_out_fan_in", json=4, params={"timeout": "10", "pollingInterval": "1"}
    )
    assert (r.status_code, r.json()) == (200, 12)
    r = api.session.post(f"{api.mgmt}/orchestrators/wait_forever", params={"timeout": "0.2"})
    assert r.status_code == 202
    api.session.post(f"{api.mgmt}/instances/{r.json()['id']}/terminate")


def test_conflict_on_running_instance_id(api):
    iid = f"dup-{uuid.uuid4().hex}"
    assert api.session.post(f"{api.mgmt}/orchestrators/wait_forever/{iid}").status_code == 202
    r = api.session.post(f"{api.mgmt}/orchestrators/wait_forever/{iid}")
    assert r.status_code == 409
    assert api.session.post(f"{api.mgmt}/instances/{iid}/terminate?reason=x").status_code == 202
    api.wait(iid)
    assert api.session.post(f"{api.mgmt}/instances/{iid}/terminate").status_code == 410
    assert api.session.post(f"{api.mgmt}/instances/{iid}/suspend").status_code == 410
    assert api.session.post(f"{api.mgmt}/instances/{iid}/raiseEvent/go", json=1).status_code == 410
    # a finished id may be reused
    assert api.session.post(f"{api.mgmt}/orchestrators/fan_out_fan_in/{iid}", json=1).status_code == 202


def test_bad_requests_get_4xx_never_500(api):
    s, m = api.session, api.mgmt
    cases = [
        (s.get(f"{m}/instances/unknown-id"), 404),
        (s.delete(f"{m}/instances/unknown-id"), 404),
        (s.post(f"{m}/instances/unknown-id/terminate"), 404),
        (s.post(f"{m}/instances/unknown-id/suspend"), 404),
        (s.post(f"{m}/instances/unknown-id/resume"), 404),
        (s.post(f"{m}/instances/unknown-id/rewind"), 404),
        (s.post(f"{m}/instances/unknown-id/restart"), 400),  # the extension's answer
        (s.post(f"{m}/instances/unknown-id/raiseEvent/x", json=1), 404),
        (s.post(f"{m}/orchestrators/no_such_orchestrator"), 400),
        (
            s.post(
                f"{m}/orchestrators/hello_sequence", data=b"{not json", headers={"Content-Type": "application/json"}
            ),
            400,
        ),
        (
            s.post(
                f"{m}/orchestrators/hello_sequence",
                data=b"[" * 100_000,  # past the JSON parser's depth guard
                headers={"Content-Type": "application/json"},
            ),
            400,
        ),
        (s.put(f"{m}/instances/anything"), 404),  # wrong method
        (s.get(f"{m}/orchestrators/hello_sequence"), 404),  # wrong method
        (s.get(f"{m}/no/such/route"), 404),
        (s.delete(f"{m}/instances/"), 400),  # createdTimeFrom missing
        (s.delete(f"{m}/instances/", params={"createdTimeFrom": "yesterday"}), 400),
    ]
    for response, expected in cases:
        assert response.status_code == expected, (response.request.method, response.url, response.text)
    body = s.post(f"{m}/orchestrators/no_such_orchestrator").json()
    assert "doesn't exist" in body["ExceptionMessage"]
    # the extension's bodies: ArgumentException, JsonReaderException, a Message alone, a bare string
    assert (body["Message"], body["ExceptionType"]) == (
        "One or more of the arguments submitted is incorrect",
        "System.ArgumentException",
    )
    bad_json = s.post(f"{m}/orchestrators/hello_sequence", data=b"{x", headers={"Content-Type": "application/json"})
    assert (bad_json.json()["Message"], bad_json.json()["ExceptionType"]) == (
        "Invalid JSON content",
        "Newtonsoft.Json.JsonReaderException",
    )
    assert s.delete(f"{m}/instances/").json() == "Please provide value for 'createdTimeFrom' parameter."
    iid = api.start("wait_forever")["id"]
    r = s.post(f"{m}/instances/{iid}/raiseEvent/go", data=b"{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = s.post(f"{m}/instances/{iid}/raiseEvent/go", data=b"1", headers={"Content-Type": "text/plain"})
    assert (r.status_code, r.json()) == (400, {"Message": "Only application/json request content is supported"})
    r = s.post(f"{m}/instances/{iid}/raiseEvent/go", data=b" ", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "empty" in r.json()["ExceptionMessage"]
    assert s.get(f"{m}/instances", headers={"x-ms-continuation-token": "-1"}).status_code == 400
    r = s.post(f"{m}/instances/{iid}/rewind")
    assert r.status_code == 412
    s.post(f"{m}/instances/{iid}/terminate")


def test_rpc_path_serves_the_same_api(api):
    iid = api.run("fan_out_fan_in", 1)["instanceId"]
    r = api.session.get(f"{api.base}/durabletask/instances/{iid}")
    assert r.status_code == 200 and r.json()["output"] == 0
