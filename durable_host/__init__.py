"""A pure-Python local host for Azure Durable Functions Python v2 apps.

It does what Azure Functions Core Tools plus the .NET Durable extension do for an
``azure-functions-durable`` 1.x app: index ``function_app.py``, serve HTTP triggers, run
orchestrators through the SDK's JSON replay protocol, run activities, persist the task hub in
SQLite and expose Microsoft's HTTP management API. Run it with ``python -m durable_host``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
