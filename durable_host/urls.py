"""URLs the host hands to clients: management links and the durable client binding JSON.

Both come from one template so that ``create_check_status_response`` (SDK side) and the
management API (host side) always agree.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .config import HostConfig

WEBHOOK_PATH = "/runtime/webhooks/durabletask"
RPC_PATH = "/durabletask"  # the extension's local RPC listener path, served on the same port
INSTANCE_PLACEHOLDER = "INSTANCEID"


def _hub_query(config: HostConfig) -> str:
    return f"taskHub={quote(config.hub_name)}&connection=Storage"


def management_urls(origin: str, config: HostConfig, instance_id: str) -> dict[str, str]:
    """The check-status payload (``managementUrls`` with the id filled in)."""
    base = f"{origin}{WEBHOOK_PATH}/instances/{quote(instance_id, safe='')}"
    q = _hub_query(config)
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{base}?{q}",
        "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{q}",
        "terminatePostUri": f"{base}/terminate?reason={{text}}&{q}",
        "rewindPostUri": f"{base}/rewind?reason={{text}}&{q}",
        "purgeHistoryDeleteUri": f"{base}?{q}",
        "restartPostUri": f"{base}/restart?{q}",
        "suspendPostUri": f"{base}/suspend?reason={{text}}&{q}",
        "resumePostUri": f"{base}/resume?reason={{text}}&{q}",
    }


def check_status_payload(origin: str, config: HostConfig, instance_id: str) -> dict[str, str]:
    """The body of the extension's own check-status 202 (start, restart, wait-mode timeout).

    The extension builds that body without ``rewindPostUri``, unlike ``managementUrls`` and
    the SDK's ``create_check_status_response``, which do include it.
    """
    urls = management_urls(origin, config, instance_id)
    del urls["rewindPostUri"]
    return urls


def client_binding(config: HostConfig) -> dict[str, Any]:
    """The JSON the extension injects for ``@app.durable_client_input`` (legacy RPC branch)."""
    origin = config.base_url
    rpc_host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "", "localhost") else config.public_host
    management = management_urls(origin, config, INSTANCE_PLACEHOLDER)
    management["id"] = INSTANCE_PLACEHOLDER
    create = f"{origin}{WEBHOOK_PATH}/orchestrators/{{functionName}}[/{{instanceId}}]"
    return {
        "taskHubName": config.hub_name,
        "creationUrls": {
            "createNewInstancePostUri": f"{create}?{_hub_query(config)}",
            "createAndWaitOnNewInstancePostUri": (
                f"{create}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{_hub_query(config)}"
            ),
        },
        "managementUrls": management,
        "baseUrl": f"{origin}{WEBHOOK_PATH}",
        "requiredQueryStringParameters": _hub_query(config),
        "rpcBaseUrl": f"http://{rpc_host}:{config.port}{RPC_PATH}/",
        "httpBaseUrl": "",
        "connectionName": None,
    }
