"""Queue- and timer-triggered functions for tests/host/test_queue_triggers.py and test_timer_triggers.py.

Every invocation appends one JSON line to the file named by ``TRIGGER_JOURNAL``. Queue and schedule
names come from app settings (``%WORK_QUEUE%``, ``%TICK_SCHEDULE%``...): a function whose setting is
unset is in error and does not run, so each test turns on only the functions it needs.
"""

import asyncio
import json
import os
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def record(**entry: object) -> None:
    with open(os.environ["TRIGGER_JOURNAL"], "a", encoding="utf-8") as journal:
        journal.write(json.dumps({**entry, "at": time.time()}) + "\n")


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="QueueStorage")
@app.durable_client_input(client_name="client")
async def work(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """``fail`` raises, ``sleep:S`` takes S seconds, ``hang`` a minute on its first delivery only,
    ``start:ID`` starts ``hello`` as instance ID."""
    body = msg.get_body()
    text = body.decode("utf-8", errors="replace")
    command, _, argument = text.partition(":")
    record(
        function="work",
        event="start",
        id=msg.id,
        body=text,
        raw=list(body) if command == "bytes" else None,
        dequeue_count=msg.dequeue_count,
        pop_receipt=bool(msg.pop_receipt),
        insertion_time=msg.insertion_time.isoformat() if msg.insertion_time else None,
        expiration_time=msg.expiration_time.isoformat() if msg.expiration_time else None,
        next_visible=msg.time_next_visible.isoformat() if msg.time_next_visible else None,
    )
    if command == "fail":
        raise RuntimeError(f"asked to fail: {text}")
    if command == "sleep":
        await asyncio.sleep(float(argument.split(":")[0]))
    if command == "hang" and msg.dequeue_count == 1:
        await asyncio.sleep(60)
    if command == "start":
        await client.start_new("hello", argument, argument)
    record(function="work", event="end", id=msg.id, body=text)


@app.orchestration_trigger(context_name="context")
def hello(context: df.DurableOrchestrationContext) -> str:
    return f"hello {context.get_input()}"


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", use_monitor=False)
@app.durable_client_input(client_name="client")
async def tick(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Every tick starts ``hello`` too, through the durable client binding."""
    instance_id = await client.start_new("hello", None, "tick")
    record(function="tick", past_due=timer.past_due, instance_id=instance_id)


@app.timer_trigger(schedule="%STARTUP_SCHEDULE%", arg_name="timer", run_on_startup=True, use_monitor=False)
def startup_tick(timer: func.TimerRequest) -> None:
    record(function="startup_tick", past_due=timer.past_due)


@app.timer_trigger(schedule="%MONITORED_SCHEDULE%", arg_name="timer", use_monitor=True)
def monitored_tick(timer: func.TimerRequest) -> None:
    record(function="monitored_tick", past_due=timer.past_due, status=timer.schedule_status)
