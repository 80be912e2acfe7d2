"""Invalid on purpose: functions on a blueprint that is never registered on an app object."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}"
