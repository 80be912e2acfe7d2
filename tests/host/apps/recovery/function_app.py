"""Slow orchestrations for the kill -9 test: every activity run is appended to a journal."""

import os
import time
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="step")
def slow_step(step: dict) -> str:
    with open(os.environ["RECOVERY_JOURNAL"], "a") as journal:
        journal.write(f"start {step['id']} {step['n']}\n")
    time.sleep(0.2)
    return f"{step['id']}:{step['n']}"


@app.orchestration_trigger(context_name="context")
def slow_sequence(context: df.DurableOrchestrationContext):
    results = []
    for n in range(4):
        results.append((yield context.call_activity("slow_step", {"id": context.instance_id, "n": n})))
    yield context.create_timer(context.current_utc_datetime + timedelta(milliseconds=300))
    fan = yield context.task_all(
        [context.call_activity("slow_step", {"id": context.instance_id, "n": 10 + k}) for k in range(3)]
    )
    return results + fan
