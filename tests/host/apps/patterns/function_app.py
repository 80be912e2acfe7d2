"""Test app for durable_host: one function per Durable Functions pattern.

Everything here is plain azure-functions / azure-functions-durable 1.x code, exactly as it
would be deployed to Azure; the host tests drive it over HTTP.
"""

import json
import logging
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func
from blueprint import bp

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)

# Attempts per key, so the flaky activity can fail a chosen number of times.
_ATTEMPTS: dict = {}


# ---------------------------------------------------------------- HTTP triggers


@app.route(route="orchestrators/{functionName}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["functionName"], req.params.get("instanceId"), payload)
    logging.info("Started orchestration with ID = '%s'.", instance_id)
    return client.create_check_status_response(req, instance_id)


@app.route(route="client/{op}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def client_ops(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Runs one DurableOrchestrationClient call named by {op} and returns what it gave back."""
    op = req.route_params["op"]
    a = req.get_json() if req.get_body() else {}
    iid = a.get("instance_id")
    if op == "start":
        result = await client.start_new(a["name"], iid, a.get("input"))
    elif op == "status":
        st = await client.get_status(
            iid, a.get("show_history", False), a.get("show_history_output", False), a.get("show_input", False)
        )
        result = st.to_json() if st else None
        if st and st.historyEvents is not None:
            result["historyEvents"] = st.historyEvents
    elif op == "status_all":
        result = [s.to_json() for s in await client.get_status_all()]
    elif op == "status_by":
        from datetime import datetime

        statuses = [df.OrchestrationRuntimeStatus(s) for s in a["statuses"]] if a.get("statuses") else None
        result = [
            s.to_json()
            for s in await client.get_status_by(
                datetime.fromisoformat(a["from"]) if a.get("from") else None,
                datetime.fromisoformat(a["to"]) if a.get("to") else None,
                statuses,
            )
        ]
    elif op == "raise_event":
        result = await client.raise_event(iid, a["event"], a.get("data"))
    elif op == "terminate":
        result = await client.terminate(iid, a.get("reason", "because"))
    elif op == "suspend":
        result = await client.suspend(iid, a.get("reason", "because"))
    elif op == "resume":
        result = await client.resume(iid, a.get("reason", "because"))
    elif op == "rewind":
        result = await client.rewind(iid, a.get("reason", "because"))
    elif op == "restart":
        result = await client.restart(iid, a.get("new_id", True))
    elif op == "purge":
        result = (await client.purge_instance_history(iid)).instances_deleted
    elif op == "purge_by":
        from datetime import datetime

        statuses = [df.OrchestrationRuntimeStatus(s) for s in a["statuses"]] if a.get("statuses") else None
        result = (
            await client.purge_instance_history_by(
                datetime.fromisoformat(a["from"]) if a.get("from") else None,
                datetime.fromisoformat(a["to"]) if a.get("to") else None,
                statuses,
            )
        ).instances_deleted
    elif op == "wait":
        return await client.wait_for_completion_or_create_check_status_response(
            req, iid, a.get("timeout_ms", 10000), a.get("retry_ms", 100)
        )
    elif op == "payload":
        result = client.create_http_management_payload(iid)
    else:
        return func.HttpResponse(f"unknown op {op}", status_code=400)
    return func.HttpResponse(json.dumps({"result": result}, default=str), mimetype="application/json")


@app.route(route="items/{id:int}/{name:alpha?}", methods=["GET", "PUT"])
def item_route(req: func.HttpRequest) -> func.HttpResponse:
    """Sync HTTP function: route parameters with constraints and an optional segment."""
    return func.HttpResponse(
        json.dumps({"route": dict(req.route_params), "method": req.method}), mimetype="application/json"
    )


@app.route(route="files/{folder}/{*rest}")
def file_route(req: func.HttpRequest) -> func.HttpResponse:
    """Sync HTTP function: a segment and a catch-all, to show how an encoded slash is routed."""
    return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


@app.route(route="echo", methods=["GET", "POST", "DELETE"])
async def echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Async HTTP function echoing what the host handed it, plus a custom header."""
    return func.HttpResponse(
        json.dumps(
            {
                "method": req.method,
                "url": req.url,
                "params": dict(req.params),
                "header": req.headers.get("x-test"),
                "body": req.get_body().decode(),
                "function_name": context.function_name,
                "invocation_id": context.invocation_id,
            }
        ),
        status_code=201,
        headers={"x-echo": "yes"},
        mimetype="application/json",
    )


@app.route(route="text", auth_level=func.AuthLevel.ANONYMOUS)
def plain_text(req: func.HttpRequest) -> str:
    return "just a string"


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("http function failed on purpose")


# ---------------------------------------------------------------- activities


@app.activity_trigger(input_name="name")
def say_hello(name: str) -> str:
    logging.info("say_hello %s", name)
    return f"Hello {name}"


@app.activity_trigger(input_name="value")
async def double(value: int) -> int:
    return value * 2


@app.activity_trigger(input_name="payload")
def flaky(payload: dict) -> str:
    key = payload["key"]
    _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
    if _ATTEMPTS[key] <= payload["fail_times"]:
        raise ValueError(f"flaky failure {_ATTEMPTS[key]}")
    return f"ok after {_ATTEMPTS[key]}"


@app.activity_trigger(input_name="value")
def echo_activity(value):
    return value


# ---------------------------------------------------------------- orchestrators


@app.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext):
    logging.info("hello_sequence running (unguarded log line)")
    results = []
    for city in ["Tokyo", "Seattle", "London", "Paris", "Cairo"]:
        results.append((yield context.call_activity("say_hello", city)))
    results.append((yield context.call_activity("bp_shout", "blueprint")))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out_fan_in(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("double", i) for i in range(n)])
    context.set_custom_status({"done": len(results)})
    return sum(results)


@app.orchestration_trigger(context_name="context")
def retry_orch(context: df.DurableOrchestrationContext):
    a = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=a["max_attempts"])
    try:
        return (yield context.call_activity_with_retry("flaky", options, a))
    except Exception as e:  # noqa: BLE001  the SDK raises bare Exception for a failed activity or sub-orchestration
        return {"error": str(e)}


@app.orchestration_trigger(context_name="context")
def parallel_retry(context: df.DurableOrchestrationContext):
    """Several retrying and plain activities in flight at once (ids allocated across batches)."""
    a = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=20, max_number_of_attempts=4)
    tasks = []
    for i in range(a["n"]):
        tasks.append(
            context.call_activity_with_retry("flaky", options, {"key": f"{a['key']}-{i}", "fail_times": i % 4})
        )
        tasks.append(context.call_activity("double", i))
    first = yield context.task_all(tasks)
    second = yield context.call_activity("double", 100)
    return {"first": first, "second": second}


@app.orchestration_trigger(context_name="context")
def timer_orch(context: df.DurableOrchestrationContext):
    start = context.current_utc_datetime
    yield context.create_timer(start + timedelta(seconds=context.get_input()))
    return (context.current_utc_datetime - start).total_seconds()


@app.orchestration_trigger(context_name="context")
def event_orch(context: df.DurableOrchestrationContext):
    """Waits for Approval or times out; the losing timer is cancelled."""
    a = context.get_input() or {}
    context.set_custom_status("waiting")
    timeout = context.create_timer(context.current_utc_datetime + timedelta(seconds=a.get("timeout", 30)))
    approval = context.wait_for_external_event("Approval")
    winner = yield context.task_any([approval, timeout])
    if winner == approval:
        timeout.cancel()
        context.set_custom_status("approved")
        return {"approval": approval.result}
    context.set_custom_status("timeout")
    return {"approval": None}


@app.orchestration_trigger(context_name="context")
def two_events(context: df.DurableOrchestrationContext):
    """Sleeps first, so events raised immediately arrive before the waits."""
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=context.get_input()))
    a = yield context.wait_for_external_event("A")
    b = yield context.wait_for_external_event("B")
    return [a, b]


@app.orchestration_trigger(context_name="context")
def child_orch(context: df.DurableOrchestrationContext):
    a = context.get_input()
    if a.get("fail"):
        raise ValueError(f"child failed: {a['fail']}")
    return (yield context.call_activity("say_hello", a["name"]))


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("flaky", context.get_input()))


@app.orchestration_trigger(context_name="context")
def parent_orch(context: df.DurableOrchestrationContext):
    key = context.get_input()
    ok = yield context.call_sub_orchestrator("child_orch", {"name": "child"})
    named = yield context.call_sub_orchestrator("child_orch", {"name": "named"}, f"{context.instance_id}-named")
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50, max_number_of_attempts=3)
    retried = yield context.call_sub_orchestrator_with_retry("flaky_child", options, {"key": key, "fail_times": 2})
    try:
        yield context.call_sub_orchestrator("child_orch", {"fail": "on purpose"})
        failed = None
    except Exception as e:  # noqa: BLE001  the SDK raises bare Exception for a failed activity or sub-orchestration
        failed = str(e)
    return {"ok": ok, "named": named, "retried": retried, "failed": failed}


@app.orchestration_trigger(context_name="context")
def counter_can(context: df.DurableOrchestrationContext):
    n = context.get_input()
    if n < 3:
        yield context.call_activity("double", n)
        context.continue_as_new(n + 1)
        return None
    return n


@app.orchestration_trigger(context_name="context")
def determinism(context: df.DurableOrchestrationContext):
    u1 = context.new_uuid()
    t1 = context.current_utc_datetime.isoformat()
    echoed = yield context.call_activity("echo_activity", [u1, t1])
    u2 = context.new_uuid()
    return {
        "same_uuid": echoed[0] == u1,
        "same_time": echoed[1] == t1,
        "distinct": u1 != u2,
        "is_replaying_after_yield": context.is_replaying,
    }


@app.orchestration_trigger(context_name="context")
def failing_orch(context: df.DurableOrchestrationContext):
    yield context.call_activity("say_hello", "x")
    raise ValueError("kaboom")


@app.orchestration_trigger(context_name="context")
def activity_error(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("flaky", {"key": context.instance_id, "fail_times": 5})
    except Exception as e:  # noqa: BLE001  the SDK raises bare Exception for a failed activity or sub-orchestration
        return str(e)


@app.orchestration_trigger(context_name="context")
def wait_forever(context: df.DurableOrchestrationContext):
    context.set_custom_status({"stage": "waiting"})
    value = yield context.wait_for_external_event("go")
    return {"go": value}


@app.orchestration_trigger(context_name="context")
def rewindable(context: df.DurableOrchestrationContext):
    """Fails once (flaky fails the first attempt), so a rewind can complete it."""
    return (yield context.call_activity("flaky", {"key": context.instance_id, "fail_times": 1}))


@app.activity_trigger(input_name="delay")
async def whoami(delay: float) -> int:
    """The process id of whoever runs activities (the host, or a worker process)."""
    import asyncio
    import os

    await asyncio.sleep(delay)
    return os.getpid()


@app.activity_trigger(input_name="seconds")
def busy_interval(seconds: float) -> list:
    """Sleeps in a sync activity; returns (pid, start, end) so tests can see what overlapped."""
    import os
    import time

    start = time.time()
    time.sleep(seconds)
    return [os.getpid(), start, time.time()]


@app.orchestration_trigger(context_name="context")
def intervals(context: df.DurableOrchestrationContext):
    return (yield context.task_all([context.call_activity("busy_interval", 0.3) for _ in range(6)]))


@app.activity_trigger(input_name="marker")
def exit_once(marker: str) -> str:
    """Kills its worker process the first time (only ever run with --workers), then succeeds."""
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "survived"


@app.orchestration_trigger(context_name="context")
def crash_worker(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=2)
    return (yield context.call_activity_with_retry("exit_once", options, context.get_input()))


@app.orchestration_trigger(context_name="context")
def pids(context: df.DurableOrchestrationContext):
    return sorted(set((yield context.task_all([context.call_activity("whoami", 0.2) for _ in range(6)]))))


@app.orchestration_trigger(context_name="context")
def http_call(context: df.DurableOrchestrationContext):
    """context.call_http: the extension's built-in HTTP activity."""
    response = yield context.call_http("GET", context.get_input())
    return response


@app.activity_trigger(input_name="payload")
def fail_first_attempt(payload: dict) -> str:
    """Fails its first attempt (marked by a file) after a delay of ``delay`` seconds; then succeeds."""
    import os
    import time

    marker = os.path.join(payload["dir"], str(payload["i"]))
    if os.path.exists(marker):
        return f"ok {payload['i']}"
    open(marker, "w").close()
    time.sleep(payload["delay"])
    raise ValueError(f"first attempt of {payload['i']} fails")


@app.orchestration_trigger(context_name="context")
def fan_out_failing(context: df.DurableOrchestrationContext):
    """Six parallel activities that all fail once, one after another (staggered delays)."""
    a = context.get_input()
    return (
        yield context.task_all(
            [
                context.call_activity("fail_first_attempt", {"dir": a["dir"], "i": i, "delay": a["step"] * i})
                for i in range(6)
            ]
        )
    )


@app.orchestration_trigger(context_name="context")
def rewindable_parent(context: df.DurableOrchestrationContext):
    """Its sub-orchestration fails once, so rewinding it must rewind the child too."""
    return (yield context.call_sub_orchestrator("flaky_child", {"key": context.instance_id, "fail_times": 1}))


@app.orchestration_trigger(context_name="context")
def rewindable_timer(context: df.DurableOrchestrationContext):
    """Fails while its timer is pending; the timer fires while the instance is Failed."""
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=0.5))
    flaky_task = context.call_activity("flaky", {"key": context.instance_id, "fail_times": 1})
    yield context.task_all([timer, flaky_task])
    return flaky_task.result
