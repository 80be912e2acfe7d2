"""Test app for a deployment that changes an orchestrator while an instance of it is running.

``REDEPLOYED_FIRST_STEP`` stands for the code: the host is restarted on the same task hub with another value,
as a new deployment would be, while an instance waits for an event after its first step.
"""

import os

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
FIRST_STEP = os.environ.get("REDEPLOYED_FIRST_STEP", "first_step")


@app.activity_trigger(input_name="value")
def first_step(value: str) -> str:
    return f"first {value}"


@app.activity_trigger(input_name="value")
def renamed_step(value: str) -> str:
    return f"renamed {value}"


@app.orchestration_trigger(context_name="context")
def redeployed(context: df.DurableOrchestrationContext):
    """The first step, then a wait for ``go`` (the deployment happens while it waits)."""
    if FIRST_STEP == "nothing":
        return "returned at once"
    if FIRST_STEP == "timer":
        yield context.create_timer(context.current_utc_datetime)
        first = "timer"
    else:
        first = yield context.call_activity(FIRST_STEP, "x")
    go = yield context.wait_for_external_event("go")
    return [first, go]
