from datetime import datetime
from typing import Any

import azure.functions as func

from .DurableOrchestrationStatus import DurableOrchestrationStatus
from .OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

class DurableOrchestrationClient:
    def __init__(self, context: str) -> None: ...
    async def start_new(
        self,
        orchestration_function_name: str,
        instance_id: str | None = None,
        client_input: Any | None = None,
        version: str | None = None,
    ) -> str: ...
    def create_check_status_response(self, request: func.HttpRequest, instance_id: str) -> func.HttpResponse: ...
    def create_http_management_payload(self, instance_id: str) -> dict[str, str]: ...
    async def raise_event(
        self,
        instance_id: str,
        event_name: str,
        event_data: Any = None,
        task_hub_name: str | None = None,
        connection_name: str | None = None,
    ) -> None: ...
    async def get_status(
        self,
        instance_id: str,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = False,
    ) -> DurableOrchestrationStatus: ...
    async def get_status_all(self) -> list[DurableOrchestrationStatus]: ...
    async def get_status_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: list[OrchestrationRuntimeStatus] | None = None,
    ) -> list[DurableOrchestrationStatus]: ...
    async def terminate(self, instance_id: str, reason: str) -> None: ...
    async def wait_for_completion_or_create_check_status_response(
        self,
        request: func.HttpRequest,
        instance_id: str,
        timeout_in_milliseconds: int = 10000,
        retry_interval_in_milliseconds: int = 1000,
    ) -> func.HttpResponse: ...
    async def suspend(self, instance_id: str, reason: str) -> None: ...
    async def resume(self, instance_id: str, reason: str) -> None: ...
    async def restart(self, instance_id: str, restart_with_new_instance_id: bool = True) -> str: ...
    def __getattr__(self, name: str) -> Any: ...  # incomplete: entities, purge, rewind, ...
