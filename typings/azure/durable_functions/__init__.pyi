# Type stubs for azure-functions-durable 1.x, which ships without type information (no py.typed).
# The public API the app uses is typed here once, so no module needs `# type: ignore` for the SDK.
# Stubs are partial: a name not declared here is `Any` (the module-level __getattr__), as is any
# SDK submodule without a stub (see [[tool.mypy.overrides]] in pyproject.toml).
from typing import Any

from .decorators.durable_app import Blueprint as Blueprint
from .decorators.durable_app import DFApp as DFApp
from .models.DurableOrchestrationClient import DurableOrchestrationClient as DurableOrchestrationClient
from .models.DurableOrchestrationContext import DurableOrchestrationContext as DurableOrchestrationContext
from .models.DurableOrchestrationStatus import DurableOrchestrationStatus as DurableOrchestrationStatus
from .models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as OrchestrationRuntimeStatus
from .models.RetryOptions import RetryOptions as RetryOptions

def __getattr__(name: str) -> Any: ...  # incomplete: Orchestrator, Entity, EntityId, ...
