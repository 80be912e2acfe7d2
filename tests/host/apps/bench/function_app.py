"""The benchmark app: HelloSequence5 and a fan-out/fan-in, with no-op activities."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="name")
def noop(name: str) -> str:
    return name


@app.orchestration_trigger(context_name="context")
def HelloSequence5(context: df.DurableOrchestrationContext):
    results = []
    for city in ("Tokyo", "Seattle", "London", "Paris", "Cairo"):
        results.append((yield context.call_activity("noop", city)))
    return results


@app.orchestration_trigger(context_name="context")
def FanOutFanIn(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("noop", str(i)) for i in range(n)])
    return len(results)
