"""A durable entity, which durable_host refuses at startup naming the function."""

import azure.durable_functions as df

app = df.DFApp()


@app.entity_trigger(context_name="context")
def Counter(context: df.DurableEntityContext):
    context.set_state((context.get_state(lambda: 0) or 0) + 1)
