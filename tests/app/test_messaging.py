"""Message-driven use without a host: routing fields, reply targets, signatures, reply documents, poison
envelopes, delivery as the orchestration's last step, and the session orchestrator replayed through the
SDK's own handle against histories built event by event."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.functions._durable_functions import OrchestrationContext

import services
from activities.delivery import deliver, queue_document
from api import starter
from api.queue_starter import poison_envelope
from api.starter import StartError, start_task
from api.validation import RequestError, parse_json_submission
from contracts import (
    CLASSIFY_ORCHESTRATOR,
    DELIVER_ACTIVITY,
    INFERENCE_ACTIVITY,
    SESSION_ORCHESTRATOR,
    SESSION_TASK_EVENT,
    ClassificationRequest,
    Delivery,
    ImageSource,
    SessionState,
)
from durable_host.config import build_config
from durable_host.urls import client_binding
from messaging.queues import MAX_JSON_BYTES
from messaging.replies import ReplyError, ReplyKind, check_reply_to
from messaging.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers, verify
from orchestrators.session import RECENT_TASKS, STATE_MAX_CHARS, STATUS_MAX_CHARS
from orchestrators.session import bp as session_bp
from settings import Settings, get_settings, settings_from
from tests.app.test_orchestrator import make_request, run
from tests.conftest import REPO_ROOT
from tests.fixtures.azurite import ACCOUNT_KEY, ACCOUNT_NAME

pytestmark = pytest.mark.unit

CONFIGURED = settings_from(
    {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "CALLBACK_ALLOWED_HOSTS": "hooks.example.org,127.0.0.1",
        "CALLBACK_SIGNING_SECRET": "s3cret",
    }
)
BARE = settings_from({})


def submit(settings: Settings = CONFIGURED, **fields: Any) -> Any:
    body = {"model": "resnet18", "images": [{"blob": "photos/cat.jpg"}], **fields}
    return parse_json_submission(json.dumps(body).encode(), settings)


# -- routing fields ------------------------------------------------------------------------------------


def test_task_id_session_and_reply_to_are_accepted() -> None:
    routing = submit(task_id="cam-7.2026_01", session="camera-7", reply_to="results").routing
    assert (routing.task_id, routing.session, routing.reply_to) == ("cam-7.2026_01", "camera-7", "results")
    assert submit().routing.task_id is None


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"task_id": "a/b"}, "task_id", "letters, digits"),
        ({"task_id": "@entity"}, "task_id", "starting with a letter or digit"),
        ({"task_id": "x" * 65}, "task_id", "1-64"),
        ({"session": 7}, "session", "1-64"),
        ({"reply_to": "Results"}, "reply_to", "not a valid queue name"),
        ({"reply_to": "ab"}, "reply_to", "not a valid queue name"),
        ({"reply_to": ""}, "reply_to", "queue name or a callback URL"),
        ({"reply_to": "https://evil.example.com/hook"}, "reply_to", "not in CALLBACK_ALLOWED_HOSTS"),
        ({"reply_to": "http://hooks.example.org/hook"}, "reply_to", "must use https"),
        ({"reply_to": "https://user@hooks.example.org/"}, "reply_to", "user info"),
    ],
)
def test_bad_routing_fields_are_a_400_naming_the_field(fields: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(RequestError) as caught:
        submit(**fields)
    assert caught.value.field == field and words in caught.value.message


def test_reply_targets_need_their_settings() -> None:
    with pytest.raises(RequestError, match="set CALLBACK_SIGNING_SECRET"):
        submit(BARE, reply_to="https://hooks.example.org/hook")
    unresolved = settings_from(
        {
            "CALLBACK_ALLOWED_HOSTS": "hooks.example.org",
            "CALLBACK_SIGNING_SECRET": "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/s/)",
        }
    )
    with pytest.raises(RequestError, match="could not resolve counts as unset"):
        submit(unresolved, reply_to="https://hooks.example.org/hook")
    with pytest.raises(RequestError, match="set AzureWebJobsStorage"):
        submit(BARE, reply_to="results")


def test_reply_kinds() -> None:
    assert check_reply_to("https://hooks.example.org/a?b=1", CONFIGURED) is ReplyKind.CALLBACK
    assert check_reply_to("http://127.0.0.1:8080/hook", CONFIGURED) is ReplyKind.CALLBACK  # loopback: http is fine
    assert check_reply_to("task-results-1", CONFIGURED) is ReplyKind.QUEUE
    with pytest.raises(ReplyError):
        check_reply_to("double--hyphen", CONFIGURED)


@pytest.mark.parametrize(
    "name",
    [
        "classifierhub-control-00",
        "classifierhub-workitems",
        "azure-webjobs-blobtrigger-x",
        "results-poison",
        "TASK_QUEUE",
    ],
)
def test_a_reply_never_lands_in_the_apps_or_the_hosts_own_queues(name: str) -> None:
    """A client must not be able to post into the Durable backend's queues or the task queue itself."""
    queue = CONFIGURED.task_queue_name if name == "TASK_QUEUE" else name
    with pytest.raises(ReplyError, match="own queues"):
        check_reply_to(queue, CONFIGURED)
    outcome = deliver(Delivery(reply_to=queue, document={"task_id": "t"}), CONFIGURED)
    assert not outcome.delivered and "own queues" in (outcome.error or "")


# -- signatures, reply documents, poison envelopes -------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_timestamp_and_the_exact_body() -> None:
    body, now = b'{"task_id":"t"}', 1_764_000_000
    expected = "sha256=" + hmac.new(b"s3cret", b"1764000000." + body, hashlib.sha256).hexdigest()
    headers = signed_headers(body, "s3cret", now=now + 0.9)
    assert headers == {TIMESTAMP_HEADER: "1764000000", SIGNATURE_HEADER: expected}
    assert verify(body, "s3cret", expected, "1764000000", now=now + 299)
    assert not verify(body, "s3cret", expected, "1764000000", now=now + 301)  # a replay, minutes later
    assert not verify(body, "s3cret", expected, "1764000001", now=now)  # the timestamp is signed too
    assert not verify(body + b" ", "s3cret", expected, "1764000000", now=now)
    assert not verify(body, "other", expected, "1764000000", now=now)
    arabic_digits = "\u0661\u0667"  # isdigit() is True, int() would take them: not a timestamp this app sends
    for signature, timestamp in ((None, "1764000000"), (expected, None), (expected, "soon"), (expected, arabic_digits)):
        assert not verify(body, "s3cret", signature, timestamp, now=now)
    assert not verify(body, "s3cret", "sha256=ünïcode", "1764000000", now=now)  # False, not a TypeError


def test_an_output_too_large_for_a_queue_goes_as_a_summary() -> None:
    small = {"task_id": "t", "status": "Completed", "images": [{"index": 0}]}
    assert json.loads(queue_document(small)) == small
    big = {"task_id": "t", "status": "Completed", "images": [{"index": i, "pad": "x" * 1000} for i in range(60)]}
    summary = json.loads(queue_document(big))
    assert summary == {"task_id": "t", "status": "Completed", "images_omitted": 60}
    assert len(queue_document(big)) <= MAX_JSON_BYTES


def test_a_poison_envelope_carries_the_error_and_the_message() -> None:
    message = func.QueueMessage(id="m-1", body=b'{"model": "resnet999"}')
    envelope = json.loads(poison_envelope(message, message.get_body(), RequestError("unknown model", "model")))
    assert envelope["error"] == "unknown model" and envelope["field"] == "model"
    assert envelope["message"] == '{"model": "resnet999"}' and envelope["message_id"] == "m-1"
    huge = b"x" * 60_000
    truncated = json.loads(poison_envelope(message, huge, RequestError("the request body is not valid JSON")))
    assert truncated["message_truncated"] is True and len(truncated["message"]) < len(huge)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("漢字".encode() * 8000, RequestError("unknown field(s)", "x")),  # 6 bytes of JSON per character
        (json.dumps({"a" * 40_000: 1}).encode(), RequestError(f"unknown field(s) ['{'a' * 40_000}']", "a" * 40_000)),
        (b"\xff" * 38_000, RequestError("the request body is not valid JSON")),  # each byte becomes \ufffd
    ],
)
def test_a_poison_envelope_fits_in_a_queue_message_whatever_the_message_holds(body: bytes, error: RequestError) -> None:
    """A message is at most 48 KiB, but its JSON in an envelope can take twice that: the envelope keeps the
    longest start of it that fits, and the reason cut short, instead of failing to be written at all."""
    message = func.QueueMessage(id="m-2", body=body)
    encoded = poison_envelope(message, body, error)
    envelope = json.loads(encoded)
    text = body.decode("utf-8", "replace")
    assert len(encoded) <= MAX_JSON_BYTES and len(envelope["message"]) > 1000
    assert envelope["message"] == text or (envelope["message_truncated"] and text.startswith(envelope["message"]))
    assert len(envelope["error"]) <= 1100 and len(envelope.get("field", "")) <= 1100


# -- delivery as the last step of a task -------------------------------------------------------------------


def flaky(failures: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    calls = {"n": 0}

    def deliver(payload: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ConnectionError("callback answered HTTP 503")
        return {"delivered": True, "target": payload["reply_to"], "error": None}

    return deliver


def with_reply(request: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
    return {**request, "reply_to": "https://hooks.example.org/h", "delivery_attempts": attempts}


def test_delivery_is_retried_by_the_orchestration_each_attempt_in_the_history() -> None:
    result = run(with_reply(make_request(images=1, models=["resnet18"])), **{DELIVER_ACTIVITY: flaky(2)})
    assert result.output["delivery"] == {"delivered": True, "target": "https://hooks.example.org/h", "error": None}
    scheduled = [e for e in result.history if e["EventType"] == 4 and e["Name"] == DELIVER_ACTIVITY]
    failed = [e for e in result.history if e["EventType"] == 6 and "deliver_result" in e["Reason"]]
    assert len(scheduled) == 3 and len(failed) == 2
    delivered = [payload for name, payload in result.calls if name == DELIVER_ACTIVITY][-1]
    assert delivered["document"]["task_id"] == "task-1" and "delivery" not in delivered["document"]


def test_a_failed_delivery_does_not_change_the_task_outcome() -> None:
    result = run(with_reply(make_request(images=1, models=["resnet18"]), attempts=2), **{DELIVER_ACTIVITY: flaky(9)})
    assert result.error is None and result.output["status"] == "Completed"
    delivery = result.output["delivery"]
    assert delivery["delivered"] is False and "HTTP 503" in delivery["error"]


def test_an_orchestration_that_fails_tells_its_reply_to_then_fails() -> None:
    """An inference result the orchestrator cannot read makes it raise (as in the retention tests)."""
    request = {**with_reply(make_request(images=1, models=["resnet18"]), attempts=2), "session": "cam"}
    result = run(request, **{INFERENCE_ACTIVITY: lambda payload: {}, DELIVER_ACTIVITY: flaky(1)})
    assert result.error and "model" in result.error
    sent = [payload for name, payload in result.calls if name == DELIVER_ACTIVITY]
    assert len(sent) == 2  # the first attempt failed; the orchestration retried it
    document = sent[-1]["document"]
    assert document["status"] == "Failed" and document["task_id"] == "task-1" and document["session"] == "cam"
    assert "model" in document["error"]


def test_without_reply_to_nothing_is_delivered() -> None:
    result = run(make_request(images=1, models=["resnet18"]))
    assert "delivery" not in result.output
    assert all(name != DELIVER_ACTIVITY for name, _ in result.calls)


# -- the session orchestrator, replayed --------------------------------------------------------------------

CALL_SUB_ORCHESTRATOR, CONTINUE_AS_NEW, WAIT_FOR_EVENT, WHEN_ANY = 2, 4, 6, 11


def session_handle() -> Callable[[Any], str]:
    app = df.DFApp()
    app.register_functions(session_bp)
    (function,) = app.get_functions()
    assert function.get_trigger().orchestration == SESSION_ORCHESTRATOR
    return function.get_user_function()


def request(task_id: str) -> ClassificationRequest:
    return ClassificationRequest(
        task_id=task_id,
        models=["resnet18"],
        images=[ImageSource(blob=f"uploads/{task_id}/0.png")],
        top_k=1,
        submitted_at="2026-01-01T00:00:00+00:00",
        batch_size=8,
        retry_attempts=1,
        retry_interval_ms=10,
        session="cam",
    )


class Execution:
    """One execution of the session orchestrator: append events episode by episode and read its state."""

    def __init__(self, state: SessionState) -> None:
        self.input = state.to_json()
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.history: list[dict[str, Any]] = []
        self.handle = session_handle()
        self.episode(self.event(0, Name=SESSION_ORCHESTRATOR, Version="", Input=json.dumps(self.input)))

    def event(self, event_type: int, event_id: int = -1, **fields: Any) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=10)
        stamp = self.clock.isoformat().replace("+00:00", "Z")
        return {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": stamp, **fields}

    def episode(self, *events: dict[str, Any]) -> dict[str, Any]:
        if self.history:
            self.history.append(self.event(13))
        self.history += [self.event(12), *events]
        for event in self.history[: -len(events) - 1]:
            event["IsPlayed"] = True
        context = {"history": self.history, "input": json.dumps(self.input), "instanceId": "session@cam",
                   "isReplaying": False, "parentInstanceId": None, "upperSchemaVersion": 1,
                   "upperSchemaVersionNew": 2}  # fmt: skip
        self.state: dict[str, Any] = json.loads(self.handle(OrchestrationContext(json.dumps(context))))
        return self.state

    def task_event(self, task_id: str) -> dict[str, Any]:
        # what raise_event from Python stores: the JSON text of the JSON text (see orchestrators/session.py)
        return self.event(15, Name=SESSION_TASK_EVENT, Input=json.dumps(json.dumps(request(task_id).to_json())))

    def actions(self) -> list[dict[str, Any]]:
        flat: list[dict[str, Any]] = []
        for action in self.state["actions"][0]:
            flat += action.get("compoundActions") or [action]
        return flat

    def started(self) -> list[str]:
        return [a["instanceId"] for a in self.actions() if a["actionType"] == CALL_SUB_ORCHESTRATOR]

    def continued_with(self) -> SessionState:
        assert self.state["isDone"], self.state
        (action,) = [a for a in self.actions() if a["actionType"] == CONTINUE_AS_NEW]
        return SessionState.from_json(json.loads(action["input"]))


def test_an_idle_session_waits_for_a_task_then_runs_it_under_its_own_instance_id() -> None:
    run_ = Execution(SessionState(session="cam"))
    assert [a["actionType"] for a in run_.actions()] == [WAIT_FOR_EVENT]
    assert run_.state["customStatus"] == {
        "session": "cam", "running": None, "queued": [], "finished": 0, "last": None, "refused": None
    }  # fmt: skip
    run_.episode(run_.task_event("t1"))
    (child,) = [a for a in run_.actions() if a["actionType"] == CALL_SUB_ORCHESTRATOR]
    assert child["functionName"] == CLASSIFY_ORCHESTRATOR and child["instanceId"] == "t1"
    assert json.loads(child["input"])["task_id"] == "t1"
    assert run_.state["customStatus"]["running"] == "t1"


def test_tasks_arriving_while_one_runs_queue_up_in_order_without_duplicates() -> None:
    run_ = Execution(SessionState(session="cam"))
    run_.episode(run_.task_event("t1"))
    garbage = run_.event(15, Name=SESSION_TASK_EVENT, Input=json.dumps("not a task"))
    run_.episode(run_.task_event("t2"), run_.task_event("t1"), garbage, run_.task_event("t3"), run_.task_event("t2"))
    assert run_.state["customStatus"]["queued"] == ["t2", "t3"]
    assert run_.started() == ["t1"]  # one at a time
    run_.episode(run_.event(7, 0, Name=CLASSIFY_ORCHESTRATOR, InstanceId="t1"), run_.event(8, TaskScheduledId=0,
                 Result=json.dumps({"status": "Completed"})))  # fmt: skip
    following = run_.continued_with()
    assert [r.task_id for r in following.queue] == ["t2", "t3"]
    assert following.recent == ["t1"] and following.finished == 1
    assert run_.state["customStatus"]["last"] == {"task_id": "t1", "runtimeStatus": "Completed", "error": None}

    run_ = Execution(following)  # the next execution starts the head at once, and still listens
    assert run_.started() == ["t2"]
    assert WAIT_FOR_EVENT in [a["actionType"] for a in run_.actions()]
    assert run_.state["customStatus"]["running"] == "t2" and run_.state["customStatus"]["queued"] == ["t3"]


def test_a_failed_task_does_not_block_the_session() -> None:
    run_ = Execution(SessionState(session="cam", queue=[request("bad"), request("next")]))
    assert run_.started() == ["bad"]
    run_.episode(run_.event(9, TaskScheduledId=0, Reason="Orchestrator function 'classify_images' failed: boom",
                            Details=None))  # fmt: skip
    following = run_.continued_with()
    assert [r.task_id for r in following.queue] == ["next"] and following.recent == ["bad"]
    assert run_.state["customStatus"]["last"]["runtimeStatus"] == "Failed"
    assert "boom" in run_.state["customStatus"]["last"]["error"]


def test_a_finished_task_raised_again_is_not_run_twice_and_recent_ids_are_bounded() -> None:
    recent = [f"old-{i}" for i in range(RECENT_TASKS)]
    run_ = Execution(SessionState(session="cam", recent=recent))
    run_.episode(run_.task_event("old-5"))
    assert run_.started() == [] and run_.state["customStatus"]["queued"] == []
    run_.episode(run_.task_event("new"))
    run_.episode(run_.event(8, TaskScheduledId=0, Result="null"))
    following = run_.continued_with()
    assert len(following.recent) == RECENT_TASKS and following.recent[-1] == "new" and "old-0" not in following.recent


def test_an_event_in_the_same_episode_after_the_ending_completion_is_lost_with_the_execution() -> None:
    """The SDK limitation the starter covers: it raises the event again when the session does not list it."""
    run_ = Execution(SessionState(session="cam", queue=[request("t1")]))
    run_.episode(run_.event(8, TaskScheduledId=0, Result="null"), run_.task_event("t2"))
    assert run_.continued_with().queue == []
    assert "t2" not in json.dumps(run_.state["customStatus"])


def test_a_session_input_round_trips_with_its_queue() -> None:
    state = SessionState(session="cam", queue=[request("a"), replace(request("b"), reply_to="q")], recent=["z"])
    assert SessionState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_a_session_refuses_a_task_its_status_has_no_room_for_and_stays_under_the_limit() -> None:
    """The extension fails an orchestration whose custom status passes 16 KB of UTF-16: starters racing past
    SESSION_MAX_QUEUED must not take the session there. Its status lists every queued id (64 characters, the
    longest a client may choose), so past about a hundred the session refuses, shows which, and goes on."""
    ids = [f"{n:064d}" for n in range(200)]
    run_ = Execution(SessionState(session="c" * 64))
    run_.episode(*[run_.task_event(task_id) for task_id in ids])
    status = run_.state["customStatus"]
    accepted = [status["running"], *status["queued"]]
    assert accepted == ids[: len(accepted)] and 100 < len(accepted) < 200
    assert status["refused"] == ids[-1] and len(json.dumps(status)) <= STATUS_MAX_CHARS
    run_.episode(run_.event(9, TaskScheduledId=0, Reason="boom " * 5000, Details=None))  # the head fails, verbosely
    status = run_.state["customStatus"]
    assert status["last"]["error"].startswith("boom boom") and status["last"]["error"].endswith("...")
    assert len(json.dumps(status)) <= STATUS_MAX_CHARS
    assert [r.task_id for r in run_.continued_with().queue] == accepted[1:]


def test_a_session_refuses_a_task_its_input_has_no_room_for() -> None:
    """Each execution's input carries the queued requests whole; 32 images with URLs and names of about 2,048
    characters make a request of about 130 KB, so a few of them would pass the Durable Task Scheduler's message
    limit."""
    big = [ImageSource(url="https://images.example.org/" + "a" * 2000, name="n" * 2048) for _ in range(32)]
    run_ = Execution(SessionState(session="cam"))
    events = [
        run_.event(
            15,
            Name=SESSION_TASK_EVENT,
            Input=json.dumps(json.dumps(replace(request(f"big-{n}"), images=big).to_json())),
        )
        for n in range(12)
    ]
    run_.episode(*events)
    status = run_.state["customStatus"]
    accepted = [status["running"], *status["queued"]]
    assert accepted == [f"big-{n}" for n in range(len(accepted))] and 1 < len(accepted) < 12
    assert status["refused"] == "big-11"
    run_.episode(run_.event(8, TaskScheduledId=0, Result="null"))
    following = run_.continued_with()
    assert len(json.dumps(following.to_json())) <= STATE_MAX_CHARS
    assert [r.task_id for r in following.queue] == accepted[1:]


def test_blob_storage_that_does_not_answer_is_a_start_error_within_seconds(
    monkeypatch: pytest.MonkeyPatch, sdk_runner: asyncio.Runner
) -> None:
    """An upload to a storage account that is down: Azure's SDK raises an AzureError, which is no OSError, and
    once retried it a minute and a half before the starter's 500. Now a StartError (the 503) after two short
    retries."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "BLOB_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};",
    )
    get_settings.cache_clear()
    services.blob_store.cache_clear()
    try:
        document = {"model": "resnet18", "images": [{"data": base64.b64encode(b"\xff\xd8 photo").decode()}]}
        submission = parse_json_submission(json.dumps(document).encode(), get_settings())
        config = build_config(REPO_ROOT, host="127.0.0.1", port=port, hub_dir=None, workers=1)
        client = df.DurableOrchestrationClient(json.dumps(client_binding(config)))
        started = time.monotonic()
        with pytest.raises(StartError, match="image storage is unavailable"):
            sdk_runner.run(start_task(client, submission))
        assert time.monotonic() - started < 15
    finally:
        get_settings.cache_clear()
        services.blob_store.cache_clear()


def test_the_stored_task_check_never_fails_or_holds_a_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk_runner: asyncio.Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """The database is needed only when a task persists: a start goes on when it cannot be opened (its folder
    is a file here) or does not answer within STORED_CHECK_TIMEOUT_S, and says so in the log; after a failure
    the next starts skip the check for STORED_CHECK_PAUSE_S (no thread is spent on a database that is down)."""
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("SQL_CONNECTION_STRING", f"sqlite:///{tmp_path / 'a-file' / 'results.db'}")
    monkeypatch.setattr(starter, "_checks_paused_until", 0.0)
    get_settings.cache_clear()
    services.database.cache_clear()
    try:
        with caplog.at_level("WARNING", logger=starter.log.name):
            assert sdk_runner.run(starter.refuse_if_stored("any-task")) is None
        assert "the results database did not answer" in caplog.text
        checked: list[str] = []
        monkeypatch.setattr(starter, "stored_task", lambda _, task_id: checked.append(task_id))
        assert sdk_runner.run(starter.refuse_if_stored("paused-task")) is None and checked == []
        monkeypatch.setattr(starter, "_checks_paused_until", 0.0)
        monkeypatch.setattr(starter, "STORED_CHECK_TIMEOUT_S", 0.2)
        monkeypatch.setattr(starter, "stored_task", lambda *_: time.sleep(3))
        began = time.monotonic()
        assert sdk_runner.run(starter.refuse_if_stored("slow-task")) is None
        assert time.monotonic() - began < 2
    finally:
        get_settings.cache_clear()
        services.database.cache_clear()


@pytest.mark.parametrize("task_id", [None, "hub-down"])
def test_a_task_hub_that_does_not_answer_is_a_start_error_not_a_crash(
    task_id: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sdk_runner: asyncio.Runner
) -> None:
    """The SDK's client, bound to a port nothing listens on: its bare errors become the StartError the HTTP
    starter answers with a 503 (and a queue message retries), whether the duplicate check or the start fails."""
    monkeypatch.setenv("BLOB_LOCAL_ROOT", str(tmp_path / "blobs"))
    get_settings.cache_clear()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = build_config(REPO_ROOT, host="127.0.0.1", port=port, hub_dir=tmp_path / "hub", workers=1)
    client = df.DurableOrchestrationClient(json.dumps(client_binding(config)))
    document = {"model": "resnet18", "images": [{"blob": "photos/a.jpg"}], "task_id": task_id}
    submission = parse_json_submission(json.dumps(document).encode(), get_settings())
    with pytest.raises(StartError, match="durable task hub"):
        sdk_runner.run(start_task(client, submission))
    get_settings.cache_clear()
