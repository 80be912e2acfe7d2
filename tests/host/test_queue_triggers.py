"""Queue triggers against a real Azurite queue service: delivery, encodings, retries, poison, batches, crashes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpResponse, HttpRequest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueClient, QueueServiceClient
from azure.storage.queue import aio as queue_aio

from durable_host.app_triggers import AppIndex
from durable_host.indexing import FunctionIndex, FunctionInfo, QueueFunction, TimerFunction
from durable_host.queue_connections import QueueServices, resolve_connection
from durable_host.queue_triggers import Backoff, QueueListener, QueueTriggers, resolve_target
from durable_host.testing import HostProcess, wait_for
from durable_host.trigger_settings import MessageEncoding, QueuesOptions, queues_options
from tests.fixtures.azurite import Azurite

from .conftest import APPS

pytestmark = pytest.mark.unit  # the in-process tests; every test using Azurite gets azurite (and host) below


class Harness:
    """One test's queue, journal and app copy (``host.json`` ``extensions.queues`` as the test asks)."""

    def __init__(self, azurite: Azurite, tmp_path: Path, queues: dict[str, Any]):
        self.service = QueueServiceClient.from_connection_string(azurite.connection_string)
        self.name = f"work-{uuid.uuid4().hex[:12]}"
        self.queue: QueueClient = self.service.get_queue_client(self.name)
        self.poison: QueueClient = self.service.get_queue_client(f"{self.name}-poison")
        self.journal = tmp_path / "journal.jsonl"
        self.journal.touch()
        self.app = tmp_path / "app"
        self.app.mkdir()
        shutil.copy(APPS / "triggers" / "function_app.py", self.app)
        host_json = json.loads((APPS / "triggers" / "host.json").read_text())
        host_json["extensions"]["queues"].update(queues)
        (self.app / "host.json").write_text(json.dumps(host_json))
        self.env = {
            "QueueStorage": azurite.connection_string,
            "WORK_QUEUE": self.name,
            "TRIGGER_JOURNAL": str(self.journal),
        }
        self.hub = tmp_path / "hub"

    def host(self, **env: str) -> HostProcess:
        return HostProcess(self.app, env={**self.env, **env}, hub_dir=self.hub, startup_timeout=60)

    def send(self, text: str, encode: bool = True) -> None:
        self.queue.send_message(base64.b64encode(text.encode()).decode() if encode else text)

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]
        return [e for e in lines if all(e.get(k) == v for k, v in match.items())]

    def count(self, queue: QueueClient | None = None) -> int:
        """Messages in the queue, hidden ones included."""
        return (queue or self.queue).get_queue_properties().approximate_message_count


@pytest.fixture()
def harness(azurite_queue: Azurite, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(azurite_queue, tmp_path, getattr(request, "param", {}))
    h.queue.create_queue()
    yield h


def queues(settings: dict[str, Any]) -> pytest.MarkDecorator:
    """This test's ``extensions.queues`` on top of the app's."""
    return pytest.mark.parametrize("harness", [settings], indirect=True, ids=["queues"])


@pytest.mark.host
def test_message_processed_with_metadata_then_deleted(harness: Harness) -> None:
    with harness.host() as host:
        assert f"work: queueTrigger (queue '{harness.name}' at http://127.0.0.1:" in host.output
        harness.send("hello queue")
        wait_for(lambda: harness.entries(event="end"), "the function to finish", host)
        wait_for(lambda: harness.count() == 0, "the message to be deleted", host)
    start = harness.entries(event="start")
    assert len(start) == 1, start
    assert start[0]["body"] == "hello queue"
    assert start[0]["dequeue_count"] == 1
    assert start[0]["pop_receipt"] is True
    assert start[0]["insertion_time"] and start[0]["expiration_time"] and start[0]["next_visible"]
    assert start[0]["insertion_time"] < start[0]["expiration_time"]


@pytest.mark.host
def test_base64_message_that_is_not_utf8_arrives_as_bytes(harness: Harness) -> None:
    raw = b"bytes:\xff\xfe\x00"
    with harness.host() as host:
        harness.queue.send_message(base64.b64encode(raw).decode())
        entry = wait_for(lambda: harness.entries(event="start"), "the function to run", host)
    assert entry[0]["raw"] == list(raw)


@pytest.mark.host
def test_base64_broken_into_lines_is_decoded_as_azure_decodes_it(harness: Harness) -> None:
    """``base64.encodebytes`` ends a line every 76 characters; .NET's decoder, and so Azure, skips them."""
    text = "a message long enough to span two lines of base64 " * 3
    with harness.host() as host:
        harness.queue.send_message(base64.encodebytes(text.encode()).decode())
        entry = wait_for(lambda: harness.entries(event="start"), "the function to run", host)
    assert entry[0]["body"] == text


@pytest.mark.host
@queues({"messageEncoding": "none"})
def test_none_encoding_passes_the_text_as_is(harness: Harness) -> None:
    with harness.host() as host:
        harness.send("plain text, not base64", encode=False)
        wait_for(lambda: harness.entries(event="end"), "the function to finish", host)
        wait_for(lambda: harness.count() == 0, "the message to be deleted", host)
    assert harness.entries(event="start")[0]["body"] == "plain text, not base64"


@pytest.mark.host
def test_text_that_is_not_base64_goes_to_the_poison_queue_unrun(harness: Harness) -> None:
    with harness.host() as host:
        harness.send("not base64 at all!", encode=False)
        wait_for(lambda: harness.count(harness.poison) == 1 if _exists(harness.poison) else False, "poison", host)
        wait_for(lambda: harness.count() == 0, "the message to leave the queue", host)
    assert [m.content for m in harness.poison.peek_messages()] == ["not base64 at all!"]
    assert harness.entries() == []


@pytest.mark.host
def test_failure_is_retried_then_moved_to_poison_after_max_dequeue_count(harness: Harness) -> None:
    with harness.host() as host:
        harness.send("fail:always")
        wait_for(lambda: _exists(harness.poison) and harness.count(harness.poison) == 1, "the poison queue", host)
        wait_for(lambda: harness.count() == 0, "the message to leave the queue", host)
        host.wait_for_output("has reached MaxDequeueCount of 3. Moving message to queue")
    assert [e["dequeue_count"] for e in harness.entries(event="start")] == [1, 2, 3]
    poisoned = harness.poison.peek_messages()
    assert [base64.b64decode(m.content).decode() for m in poisoned] == ["fail:always"]  # text unchanged


@pytest.mark.host
@queues({"visibilityTimeout": "00:00:02"})
def test_failed_message_reappears_after_visibility_timeout(harness: Harness) -> None:
    with harness.host() as host:
        harness.send("fail:twice")
        starts = wait_for(
            lambda: len(harness.entries(event="start")) >= 2 and harness.entries(event="start"), "a retry", host
        )
    assert starts[1]["dequeue_count"] == 2
    assert starts[1]["at"] - starts[0]["at"] >= 1.5  # not before visibilityTimeout (2 s, whole seconds on the wire)


@pytest.mark.host
@queues({"batchSize": 2, "newBatchThreshold": 0})
def test_batch_size_and_new_batch_threshold_bound_concurrency(harness: Harness) -> None:
    for n in range(6):
        harness.send(f"sleep:0.4:{n}")
    with harness.host() as host:
        wait_for(lambda: len(harness.entries(event="end")) == 6, "six messages", host)
    running = peak = 0
    for entry in harness.entries():
        running += 1 if entry["event"] == "start" else -1
        peak = max(peak, running)
    assert peak == 2  # a whole batch runs at once, and no next batch before it drained to the threshold


@pytest.mark.host
def test_missing_queue_is_polled_not_created(harness: Harness) -> None:
    harness.queue.delete_queue()
    with harness.host() as host:
        wait_for(lambda: "does not exist (yet)" in host.output, "the missing-queue warning", host)
        assert not _exists(harness.queue)  # Azure's listener never creates the queue
        harness.queue.create_queue()
        harness.send("after create")
        wait_for(lambda: harness.entries(event="end"), "the message", host)


@pytest.mark.host
def test_queue_trigger_starts_an_orchestration_through_the_durable_client(harness: Harness) -> None:
    instance_id = f"q-{uuid.uuid4().hex[:8]}"
    with harness.host() as host:
        harness.send(f"start:{instance_id}")
        url = f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}"

        def completed() -> dict[str, Any] | None:
            r = requests.get(url, timeout=5)
            return r.json() if r.status_code == 200 and r.json()["runtimeStatus"] == "Completed" else None

        status = wait_for(completed, "the orchestration", host)
    assert status["output"] == f"hello {instance_id}"


@pytest.mark.host
def test_long_function_keeps_its_message_by_renewing_the_lease(harness: Harness) -> None:
    with harness.host(DURABLE_HOST_QUEUE_LEASE_SECONDS="2") as host:
        harness.send("sleep:4.5")
        wait_for(lambda: harness.entries(event="end"), "the function to finish", host)
        wait_for(lambda: harness.count() == 0, "the message to be deleted", host)
    assert len(harness.entries(event="start")) == 1  # never redelivered while it ran


@pytest.mark.host
def test_sigkill_with_a_message_in_flight_processes_it_after_restart(harness: Harness) -> None:
    host = harness.host(DURABLE_HOST_QUEUE_LEASE_SECONDS="2")
    with host:
        harness.send("hang")
        wait_for(lambda: harness.entries(event="start"), "the function to start", host)
        host.kill()
        assert harness.count() == 1  # still there: nothing deletes a message before its function succeeds
        host.start()
        wait_for(lambda: harness.count() == 0, "the redelivered message to be processed", host)
    assert [e["dequeue_count"] for e in harness.entries(event="start")] == [1, 2]
    assert len(harness.entries(event="end")) == 1


@pytest.mark.host
def test_graceful_stop_lets_a_running_function_finish_and_delete_its_message(harness: Harness) -> None:
    with harness.host() as host:
        harness.send("sleep:1.5")
        wait_for(lambda: harness.entries(event="start"), "the function to start", host)
        host.stop()  # SIGINT while the function runs
        assert "Host stopped." in host.output
    assert len(harness.entries(event="end")) == 1
    assert harness.count() == 0


class StorageWire(AioHttpTransport):
    """The SDK's own transport to Azurite, noting each request; it can hold renewals' answers a while.

    Holding an answer after Azurite sent it puts the host in the state a slow network does: storage
    has already changed the message's receipt and the listener does not know the new one yet.
    """

    def __init__(self, hold_updates_s: float = 0.0) -> None:
        super().__init__()
        self.hold_updates_s = hold_updates_s
        self.requests: list[tuple[float, str, str]] = []  # (monotonic time, method, URL)
        self.update_answered = asyncio.Event()

    async def send(self, request: HttpRequest, **kwargs: Any) -> AsyncHttpResponse:  # type: ignore[override]
        self.requests.append((time.monotonic(), request.method, request.url))
        response = await super().send(request, **kwargs)
        if request.method == "PUT" and "popreceipt=" in request.url:  # Update Message
            self.update_answered.set()
            await asyncio.sleep(self.hold_updates_s)
        return response

    def receives(self) -> list[float]:
        """When each Get Messages call was made."""
        return [at for at, method, url in self.requests if method == "GET" and "/messages" in url]


def queue_function(name: str = "f", queue_name: str = "work", connection: str = "C") -> QueueFunction:
    return QueueFunction(
        name=name,
        fn=print,
        trigger_param="m",
        is_async=False,
        wants_context=False,
        client_param=None,
        queue_name=queue_name,
        connection=connection,
    )


@pytest.mark.azurite
def test_function_ending_during_a_renewal_deletes_with_the_renewed_receipt(azurite_queue: Azurite) -> None:
    """The renewal's Update Message has changed the receipt when the function ends; the delete must use it."""
    name = f"renew-{uuid.uuid4().hex[:12]}"
    wire = StorageWire(hold_updates_s=0.5)
    invocations: list[str] = []

    async def invoke(function: FunctionInfo, kwargs: dict[str, Any]) -> None:
        invocations.append(kwargs["m"].id)
        if len(invocations) == 1:
            await wire.update_answered.wait()  # end while the renewal's answer is still on its way

    async def scenario() -> tuple[int, int]:
        async with queue_aio.QueueServiceClient.from_connection_string(
            azurite_queue.connection_string, transport=wire
        ) as service:
            # 6 s: past a lease (2 s), so a message kept by a stale receipt runs again
            left = await one_message_on_a_short_lease(azurite_queue, service, name, invoke, invocations, 2, 6)
            return len(invocations), left

    assert asyncio.run(scenario()) == (1, 0)  # run once, then deleted


async def one_message_on_a_short_lease(
    azurite_queue: Azurite,
    service: queue_aio.QueueServiceClient,
    name: str,
    invoke: Callable[[FunctionInfo, dict[str, Any]], Awaitable[None]],
    invocations: list[str],
    most_runs: int,
    seconds: float,
) -> int:
    """One message through a listener with a 2 s lease, until it is deleted, has run ``most_runs`` times or
    ``seconds`` pass; the messages left on the queue."""
    await service.create_queue(name)
    await service.get_queue_client(name).send_message(base64.b64encode(name.encode()).decode())
    options = QueuesOptions(batch_size=1, max_polling_interval_s=0.2, lease_s=2)
    target = resolve_target(queue_function(queue_name=name), {"C": azurite_queue.connection_string})
    listener = QueueListener(target, service, options, invoke)
    listener.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(invocations) < most_runs:
        properties = await service.get_queue_client(name).get_queue_properties()
        if invocations and properties.approximate_message_count == 0:
            break
        await asyncio.sleep(0.1)
    await listener.stop()
    return (await service.get_queue_client(name).get_queue_properties()).approximate_message_count


class RefusedRenewals:
    """A request hook that spoils the first ``count`` Update Message calls before they are signed.

    Azurite then refuses them for real: a negative visibility timeout is a 400 that says nothing
    about the lease (the renewal must be tried again), a foreign receipt is 400 PopReceiptMismatch
    (the lease is someone else's: renewing stops).
    """

    def __init__(self, count: int, spoil: tuple[str, str]) -> None:
        self.left = count
        self.pattern, self.replacement = spoil

    def __call__(self, request: PipelineRequest[HttpRequest]) -> None:
        http = request.http_request
        if http.method == "PUT" and "popreceipt=" in http.url and self.left > 0:
            self.left -= 1
            http.url = re.sub(self.pattern, self.replacement, http.url)


@pytest.mark.azurite
@pytest.mark.parametrize(
    ("spoil", "runs", "outcome"),
    [
        ((r"visibilitytimeout=\d+", "visibilitytimeout=-1"), 1, "trying again"),
        ((r"popreceipt=[^&]+", "popreceipt=AgAAAAMAAAAAAAAAAAAAAAAAAA%3D%3D"), 2, "it is no longer this host's"),
    ],
    ids=["refused-then-retried", "receipt-mismatch-stops"],
)
def test_refused_renewal_is_retried_unless_the_lease_is_lost(
    azurite_queue: Azurite, caplog: pytest.LogCaptureFixture, spoil: tuple[str, str], runs: int, outcome: str
) -> None:
    """A function outlives two leases (2 s each) while Azurite refuses its first renewal."""
    name = f"refuse-{uuid.uuid4().hex[:12]}"
    hook = RefusedRenewals(1, spoil)
    invocations: list[str] = []

    async def invoke(function: FunctionInfo, kwargs: dict[str, Any]) -> None:
        invocations.append(kwargs["m"].id)
        if len(invocations) == 1:
            await asyncio.sleep(4.5)

    async def scenario() -> int:
        async with queue_aio.QueueServiceClient.from_connection_string(
            azurite_queue.connection_string, raw_request_hook=hook
        ) as service:
            return await one_message_on_a_short_lease(azurite_queue, service, name, invoke, invocations, runs + 1, 8)

    with caplog.at_level(logging.WARNING, logger="durable_host"):
        assert asyncio.run(scenario()) == 0
    assert len(invocations) == runs, invocations
    refusals = [r.getMessage() for r in caplog.records if "cannot renew the lease" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].endswith(outcome), refusals


@pytest.mark.azurite
def test_functions_on_one_connection_share_its_service_client(azurite_queue: Azurite) -> None:
    environ = {"C": azurite_queue.connection_string, "D": azurite_queue.connection_string}
    functions = [queue_function("a", "q-a", "C"), queue_function("b", "q-b", "C"), queue_function("c", "q-c", "D")]
    targets = [resolve_target(f, environ) for f in functions]

    async def invoke(function: FunctionInfo, kwargs: dict[str, Any]) -> None:
        raise AssertionError("the queues are empty")

    async def scenario() -> list[queue_aio.QueueServiceClient]:
        triggers = QueueTriggers(targets, QueuesOptions(max_polling_interval_s=0.2), invoke)
        triggers.start()
        await asyncio.sleep(0.3)  # each polls once (the queues do not exist) and backs off
        await triggers.stop()
        return [listener.service for listener in triggers.listeners]

    a, b, c = asyncio.run(scenario())
    assert a is b  # one client, its HTTP connections, for the connection 'C'
    assert a is not c


@pytest.mark.azurite
def test_idle_poller_backs_off_to_max_polling_interval_then_picks_up_a_message(
    azurite_queue: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    """Azure's back-off on an empty queue: 100 ms, doubling with jitter, up to maxPollingInterval (1 s here)."""
    name = f"idle-{uuid.uuid4().hex[:12]}"
    wire = StorageWire()
    ran = asyncio.Event()

    async def invoke(function: FunctionInfo, kwargs: dict[str, Any]) -> None:
        ran.set()

    async def scenario() -> tuple[list[str], list[float], float]:
        async with queue_aio.QueueServiceClient.from_connection_string(
            azurite_queue.connection_string, transport=wire
        ) as service:
            await service.create_queue(name)
            options = QueuesOptions(max_polling_interval_s=1.0)
            environ = {"C": azurite_queue.connection_string}
            listener = QueueListener(resolve_target(queue_function(queue_name=name), environ), service, options, invoke)
            listener.start()
            await asyncio.sleep(5.0)  # idle: 0.1, ~0.2, ~0.3, ~0.5, ~0.9 s to reach the cap, then 1 s per poll
            receives, logged = wire.receives(), [r.getMessage() for r in caplog.records]
            sent = time.monotonic()
            await service.get_queue_client(name).send_message(base64.b64encode(b"late").decode())
            await asyncio.wait_for(ran.wait(), timeout=5)
            picked_up_after = time.monotonic() - sent
            await listener.stop()
            return logged, receives, picked_up_after

    with caplog.at_level(logging.DEBUG, logger="durable_host"):
        logged, receives, picked_up_after = asyncio.run(scenario())
    delays = [int(line.rsplit(" ", 2)[1]) for line in logged if "polling queue" in line]  # while idle
    assert delays[0] == 100
    assert all(a <= b for a, b in itertools.pairwise(delays)), delays  # grows...
    assert delays[-2:] == [1000, 1000], delays  # ...to maxPollingInterval, and stays there
    gaps = [b - a for a, b in itertools.pairwise(receives)]
    assert len(receives) <= 12, gaps  # about 9 here; without back-off about 50 in 5 s
    assert gaps[-1] >= 0.95, gaps  # the poller does sleep the interval it chose
    assert picked_up_after < 1.0 + 2.0  # at most an interval, plus slack for a loaded machine


def _exists(queue: QueueClient) -> bool:
    try:
        queue.get_queue_properties()
        return True
    except ResourceNotFoundError:
        return False


# In-process: settings, connections and the back-off, no Azurite.


def test_queues_options_defaults_are_azures(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text("{}")
    options = queues_options(tmp_path, environ={}, cpu_count=2)
    assert (options.batch_size, options.new_batch_threshold, options.max_dequeue_count) == (16, 16, 5)
    assert (options.max_polling_interval_s, options.visibility_timeout_s, options.lease_s) == (60.0, 0.0, 600)
    assert options.message_encoding is MessageEncoding.BASE64


@pytest.mark.parametrize(
    ("queues", "error"),
    [
        ({"batchSize": 33}, "batchSize must be an integer from 1 to 32"),
        ({"maxDequeueCount": 0}, "maxDequeueCount"),
        ({"maxPollingInterval": "00:00:00.05"}, "at least 100 ms"),
        ({"visibilityTimeout": "soon"}, "not a TimeSpan"),
        ({"messageEncoding": "utf8"}, "'base64' or 'none'"),
    ],
)
def test_bad_queues_settings_are_refused(tmp_path: Path, queues: dict[str, Any], error: str) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": queues}}))
    with pytest.raises(ValueError, match=error):
        queues_options(tmp_path, environ={})


def test_triggers_are_resolved_once_when_the_app_is_loaded(tmp_path: Path) -> None:
    """The listing and the listeners get this one result; host.json is not read again at start."""
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": {"batchSize": 4}}}))
    timer = TimerFunction(
        name="t", fn=print, trigger_param="t", is_async=False, wants_context=False, client_param=None, schedule="%S%"
    )
    index = FunctionIndex(queues=[queue_function(queue_name="%Q%")], timers=[timer])
    app = AppIndex.load(index, tmp_path, {"C": "UseDevelopmentStorage=true", "Q": "Jobs", "S": "0 0 * * * *"})
    (tmp_path / "host.json").write_text("not json")  # read once: a later edit does not matter
    assert (app.queues, app.timers) == (index.queues, index.timers)
    assert app.triggers.queue_options.batch_size == 4
    assert [t.queue_name for t in app.triggers.queues] == ["jobs"]
    assert app.triggers.listing(datetime(2026, 11, 23, 17, 0, tzinfo=UTC)) == [
        "f: queueTrigger (queue 'jobs' at http://127.0.0.1:10001/devstoreaccount1)",
        "t: timerTrigger (schedule '0 0 * * * *', next 2026-11-23T18:00:00+00:00)",
    ]
    assert AppIndex.load(FunctionIndex(timers=[timer]), tmp_path, {}).triggers.queue_options == QueuesOptions()
    with pytest.raises(ValueError, match="Expecting value"):  # with queue functions, bad host.json stops the host
        AppIndex.load(index, tmp_path, {})


def test_milliseconds_polling_interval_and_timespans(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps({"extensions": {"queues": {"maxPollingInterval": 2000, "visibilityTimeout": "1.00:00:30"}}})
    )
    options = queues_options(tmp_path, environ={"DURABLE_HOST_QUEUE_LEASE_SECONDS": "5"})
    assert (options.max_polling_interval_s, options.visibility_timeout_s, options.lease_s) == (2.0, 86430.0, 5)


def test_development_storage_and_identity_connections() -> None:
    dev = resolve_connection(
        "Storage", {"AzureWebJobsStorage": "x", "AzureWebJobsStorage2": "y", "Storage": "UseDevelopmentStorage=true"}
    )
    assert dev.describe() == "http://127.0.0.1:10001/devstoreaccount1"
    prefixed = resolve_connection("Other", {"AzureWebJobsOther": "UseDevelopmentStorage=true"})
    assert prefixed.setting == "AzureWebJobsOther"
    identity = resolve_connection(
        "Conn",
        {
            "Conn__queueServiceUri": "https://acct.queue.core.windows.net/",
            "Conn__credential": "managedidentity",
            "Conn__clientId": "abc",
        },
    )
    assert (identity.service_uri, identity.credential, identity.client_id) == (
        "https://acct.queue.core.windows.net",
        "managedidentity",
        "abc",
    )
    assert resolve_connection("Acc", {"Acc__accountName": "acct"}).service_uri == "https://acct.queue.core.windows.net"
    with pytest.raises(ValueError, match="'Missing' does not exist"):
        resolve_connection("Missing", {})


def test_queue_name_settings_are_resolved_lowercased_and_validated() -> None:
    function = QueueFunction(
        name="f",
        fn=print,
        trigger_param="m",
        is_async=False,
        wants_context=False,
        client_param=None,
        queue_name="%Q%",
        connection="C",
    )
    environ = {"C": "UseDevelopmentStorage=true", "Q": "Jobs-In"}
    assert resolve_target(function, environ).queue_name == "jobs-in"
    assert "Invalid queue name: a--b" in resolve_target(function, {**environ, "Q": "a--b"}).describe()
    assert "'%Q%' does not resolve" in resolve_target(function, {"C": "UseDevelopmentStorage=true"}).describe()


def test_backoff_grows_to_the_cap_and_resets_after_work() -> None:
    backoff = Backoff(maximum_s=2.0)
    delays = [backoff.next_delay(found_work=False) for _ in range(12)]
    assert delays[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == 2.0
    assert backoff.next_delay(found_work=True) == pytest.approx(0.1)


def test_identity_connections_build_clients_with_azure_identity_credentials() -> None:
    """The credential each setting selects; token requests need Entra ID, so they are not made here."""
    managed = resolve_connection(
        "Conn", {"Conn__queueServiceUri": "https://acct.queue.core.windows.net", "Conn__credential": "managedidentity"}
    )
    default = resolve_connection("Acc", {"Acc__accountName": "acct"})

    async def scenario() -> None:
        services = QueueServices()
        try:
            assert isinstance(services.client(managed).credential, ManagedIdentityCredential)
            assert isinstance(services.client(default).credential, DefaultAzureCredential)
            assert services.client(default).url.startswith("https://acct.queue.core.windows.net")
        finally:
            await services.close()

    asyncio.run(scenario())


def test_closing_the_services_closes_identity_credentials(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A managed identity's token client keeps an HTTP connection to its endpoint until it is closed.

    The endpoint here is App Service's token protocol on a loopback server: the credential's real
    request reaches it, and the server sees the connection end only when the credential is closed,
    even though another connection's client, closed first, fails to close.
    """

    async def scenario() -> bool:
        hung_up = asyncio.Event()

        async def token_endpoint(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    body = json.dumps(
                        {
                            "access_token": "local-token",
                            "expires_on": str(int(time.time()) + 3600),
                            "resource": "https://storage.azure.com",
                            "token_type": "Bearer",
                        }
                    ).encode()
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    writer.write(head.encode() + body)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                hung_up.set()
            finally:
                writer.close()

        server = await asyncio.start_server(token_endpoint, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/token")
        monkeypatch.setenv("IDENTITY_HEADER", "local")
        connection = resolve_connection(
            "Conn",
            {"Conn__queueServiceUri": "https://acct.queue.core.windows.net", "Conn__credential": "managedidentity"},
        )
        services = QueueServices()
        failing = services.client(resolve_connection("Dev", {"Dev": "UseDevelopmentStorage=true"}))

        async def refuse_to_close() -> None:
            raise OSError("socket already gone")

        monkeypatch.setattr(failing, "close", refuse_to_close)
        try:
            credential = services.client(connection).credential
            assert (await credential.get_token("https://storage.azure.com/.default")).token == "local-token"
            assert not hung_up.is_set()
            await services.close()
            await asyncio.wait_for(hung_up.wait(), timeout=5)
            return True
        except TimeoutError:
            return False
        finally:
            server.close()
            server.close_clients()

    with caplog.at_level(logging.WARNING, logger="durable_host"):
        assert asyncio.run(scenario()), "the credential's connection to the token endpoint is still open"
    assert "Closing a queue connection failed: OSError: socket already gone" in caplog.text
