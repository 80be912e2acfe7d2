"""Invalid on purpose: a builtin generic alias as a binding annotation, which Azure's worker refuses."""

from typing import Any

import azure.durable_functions as df

app = df.DFApp()


@app.activity_trigger(input_name="payload")
def summarise(payload: dict[str, Any]) -> dict:
    return payload
