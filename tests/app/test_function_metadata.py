"""The app as Azure's Python worker indexes it: one DFApp, every function with the right bindings."""

from __future__ import annotations

import json
from functools import lru_cache

import azure.functions as func
import pytest

import function_app
from contracts import (
    CLASSIFY_ORCHESTRATOR,
    DELIVER_ACTIVITY,
    DISCARD_TENSORS_ACTIVITY,
    INFERENCE_ACTIVITY,
    PERSIST_ACTIVITY,
    PREPROCESS_ACTIVITY,
    SESSION_ORCHESTRATOR,
)

pytestmark = pytest.mark.unit


@lru_cache(maxsize=1)  # get_functions() may only run once per app, as in the worker
def indexed() -> dict[str, dict]:
    """function.json equivalents, as the worker sends them to the Functions host."""
    registers = [v for v in vars(function_app).values() if isinstance(v, func.FunctionRegister)]
    assert len(registers) == 1, "the worker requires exactly one FunctionRegister in function_app.py"
    return {f.get_function_name(): json.loads(f.get_function_json()) for f in registers[0].get_functions()}


def bindings(function: dict) -> dict[str, dict]:
    return {b["name"]: b for b in function["bindings"]}


def test_every_function_is_indexed() -> None:
    assert set(indexed()) == {
        "submit_task",
        "create_task",
        "get_task_result",
        CLASSIFY_ORCHESTRATOR,
        PREPROCESS_ACTIVITY,
        INFERENCE_ACTIVITY,
        PERSIST_ACTIVITY,
        DISCARD_TENSORS_ACTIVITY,
        "maintenance",
        "start_from_queue",
        SESSION_ORCHESTRATOR,
        DELIVER_ACTIVITY,
    }


def test_the_queue_starter_is_a_queue_trigger_with_a_durable_client() -> None:
    """``TASK_QUEUE_NAME`` is unset here: the default queue, on the host's own storage connection."""
    b = bindings(indexed()["start_from_queue"])
    assert b["msg"]["type"] == "queueTrigger" and b["msg"]["queueName"] == "classification-requests"
    assert b["msg"]["connection"] == "AzureWebJobsStorage"
    assert b["client"]["type"] == "durableClient"
    assert bindings(indexed()[SESSION_ORCHESTRATOR])["context"]["type"] == "orchestrationTrigger"
    assert bindings(indexed()[DELIVER_ACTIVITY])["payload"]["type"] == "activityTrigger"


def test_starters_are_http_triggers_with_a_durable_client() -> None:
    functions = indexed()
    for name, route in (("submit_task", "tasks"), ("create_task", "create_task")):
        b = bindings(functions[name])
        assert b["req"]["type"] == "httpTrigger" and b["req"]["direction"] == "IN"
        assert b["req"]["route"] == route and b["req"]["methods"] == ["POST"]
        assert b["req"]["authLevel"] == "FUNCTION"
        assert b["client"]["type"] == "durableClient"
        assert b["$return"]["type"] == "http" and b["$return"]["direction"] == "OUT"
    result = bindings(functions["get_task_result"])
    assert result["req"]["route"] == "tasks/{task_id}" and result["req"]["methods"] == ["GET"]
    assert result["client"]["type"] == "durableClient"  # to say why a task has no stored result (issue 12)


def test_orchestrator_and_activities_have_durable_triggers() -> None:
    functions = indexed()
    orchestrator = bindings(functions[CLASSIFY_ORCHESTRATOR])["context"]
    assert orchestrator["type"] == "orchestrationTrigger"
    assert orchestrator["orchestration"] == CLASSIFY_ORCHESTRATOR
    for name in (PREPROCESS_ACTIVITY, INFERENCE_ACTIVITY, PERSIST_ACTIVITY):
        trigger = bindings(functions[name])["payload"]
        assert trigger["type"] == "activityTrigger" and trigger["activity"] == name


def test_maintenance_is_an_hourly_timer_with_a_durable_client() -> None:
    """``MAINTENANCE_SCHEDULE`` is unset here: the default schedule; the durable client asks for statuses and purges."""
    b = bindings(indexed()["maintenance"])
    assert b["timer"]["type"] == "timerTrigger" and b["timer"]["schedule"] == "0 0 * * * *"
    assert b["client"]["type"] == "durableClient"
    discard = bindings(indexed()[DISCARD_TENSORS_ACTIVITY])["instance_id"]
    assert discard["type"] == "activityTrigger" and discard["activity"] == DISCARD_TENSORS_ACTIVITY
