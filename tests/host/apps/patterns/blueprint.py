"""A blueprint registered by function_app.py: proves blueprints are indexed."""

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()


@bp.route(route="blueprint/ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def blueprint_ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong from blueprint")


@bp.activity_trigger(input_name="name")
def bp_shout(name: str) -> str:
    return name.upper() + "!"
