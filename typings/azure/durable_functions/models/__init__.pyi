from typing import Any

from .DurableOrchestrationClient import DurableOrchestrationClient as DurableOrchestrationClient
from .DurableOrchestrationContext import DurableOrchestrationContext as DurableOrchestrationContext
from .OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as OrchestrationRuntimeStatus
from .RetryOptions import RetryOptions as RetryOptions
from .Task import TaskBase as TaskBase

def __getattr__(name: str) -> Any: ...  # incomplete
