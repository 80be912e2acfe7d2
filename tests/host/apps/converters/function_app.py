"""Return values that Azure's worker converts, or refuses to convert, at invocation time."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="text")
def text(req: func.HttpRequest) -> str:
    return f"hello {req.params.get('name', 'world')}"


@app.route(route="cookies")
def cookies(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse("ok", status_code=201)
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    return response


@app.route(route="echo", methods=["POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


@app.route(route="dict")
def returns_dict(req: func.HttpRequest) -> func.HttpResponse:
    return {"not": "an HttpResponse"}  # type: ignore[return-value]  # the worker cannot send this


@app.route(route="nothing")
def returns_nothing(req: func.HttpRequest) -> func.HttpResponse:
    return None  # type: ignore[return-value]  # nor this


@app.route(route="start/{name}")
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, None)
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def unserialisable(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield context.call_activity("returns_set", None))


@app.activity_trigger(input_name="ignored")
def returns_set(ignored: str) -> str:
    return {1, 2, 3}  # type: ignore[return-value]  # not JSON: the worker fails the activity
