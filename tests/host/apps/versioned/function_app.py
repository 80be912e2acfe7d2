"""Test app for durable_host's orchestration versioning: ``defaultVersion`` is set in host.json."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def version_child(context: df.DurableOrchestrationContext):
    return context.version


@app.orchestration_trigger(context_name="context")
def version_parent(context: df.DurableOrchestrationContext):
    """Its own version and those of a default and an explicitly versioned sub-orchestration."""
    default_child = yield context.call_sub_orchestrator("version_child")
    explicit_child = yield context.call_sub_orchestrator("version_child", version="1.5")
    return {"own": context.version, "default_child": default_child, "explicit_child": explicit_child}


@app.orchestration_trigger(context_name="context")
def version_can(context: df.DurableOrchestrationContext):
    """Continues as new twice, collecting the version each execution saw."""
    seen = (context.get_input() or []) + [context.version]
    if len(seen) < 3:
        context.continue_as_new(seen)
        return None
    return seen


@app.orchestration_trigger(context_name="context")
def version_wait(context: df.DurableOrchestrationContext):
    """Waits for an event, so a host restart happens while it runs."""
    yield context.wait_for_external_event("go")
    return context.version
