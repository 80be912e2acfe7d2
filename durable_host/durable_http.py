"""``context.call_http``: the extension's built-in HTTP activity, as one plain HTTP call.

The extension's 202-polling variant adds timers and activities of its own that would shift the
SDK's sequence ids, so the host makes exactly one request (see the protocol spec, §3.2).
"""

from __future__ import annotations

import json

import aiohttp

from .activities import Outcome


async def call_http(request_json: str | None) -> Outcome:
    request = json.loads(request_json or "{}")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.get("method", "GET"),
                request["uri"],
                data=request.get("content"),
                headers=request.get("headers") or None,
            ) as response,
        ):
            content = await response.text()
            result = {"statusCode": response.status, "headers": dict(response.headers), "content": content}
            return Outcome(True, result=json.dumps(result))
    except Exception as exc:  # noqa: BLE001 - any failure of the call is the activity's failure, as on Azure
        return Outcome(False, reason=f"Durable HTTP request to {request.get('uri')} failed: {exc}")
