"""Microsoft's documented HTTP management API (``/runtime/webhooks/durabletask/``).

The same handler also answers on ``/durabletask/``, the path of the extension's local RPC
listener that the Python SDK client calls. Routing is done here rather than by aiohttp so that
an unknown route *or method* answers 404 like the extension, and so that no request can end
in a 500 for a client mistake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from .config import HostConfig
from .events import parse_ts
from .model import ALL_STATUSES, Instance
from .operations import BadRequest, HubOperations, NotFound, OperationError, Query
from .status import status_body
from .urls import management_urls

log = logging.getLogger("durable_host")

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]
DEFAULT_PAGE = 100


def error_response(status: int, message: str, exc_type: str = "System.InvalidOperationException") -> web.Response:
    """The ASP.NET error shape the extension returns."""
    return web.json_response({"Message": "Something went wrong while processing your request",
                              "ExceptionMessage": message, "ExceptionType": exc_type,
                              "StackTrace": None}, status=status)


def flag(request: web.Request, name: str, default: bool) -> bool:
    """.NET ``bool.TryParse``: case-insensitive, so the SDK's ``True`` works."""
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"The value '{value}' of query parameter '{name}' is not a boolean.")


def time_param(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise BadRequest(f"The value '{value}' of query parameter '{name}' is not a date.") from exc


def statuses_param(request: web.Request) -> frozenset[str] | None:
    value = request.query.get("runtimeStatus")
    if not value:
        return None
    by_lower = {s.lower(): s for s in ALL_STATUSES}
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n.lower() not in by_lower]
    if unknown:
        raise BadRequest(f"Unknown runtimeStatus value(s): {', '.join(unknown)}")
    return frozenset(by_lower[n.lower()] for n in names)


async def json_body(request: web.Request) -> str | None:
    """The request body as compact JSON text of its token, or None when empty."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.dumps(json.loads(raw), separators=(",", ":"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc


class ManagementApi:
    """Routes and handlers of the management API."""

    def __init__(self, ops: HubOperations, config: HostConfig):
        self.ops = ops
        self.config = config
        seg = r"(?P<{}>[^/]+)"
        self._routes: list[tuple[str, re.Pattern, Handler]] = [
            ("POST", re.compile(rf"orchestrators/{seg.format('name')}(?:/{seg.format('id')})?/?"), self.start),
            ("GET", re.compile(r"instances/?"), self.list_instances),
            ("DELETE", re.compile(r"instances/?"), self.purge_by),
            ("GET", re.compile(rf"instances/{seg.format('id')}/?"), self.get_status),
            ("DELETE", re.compile(rf"instances/{seg.format('id')}/?"), self.purge),
            ("POST", re.compile(rf"instances/{seg.format('id')}/raiseEvent/{seg.format('event')}/?"), self.raise_event),
            ("POST", re.compile(rf"instances/{seg.format('id')}/(?P<op>terminate|suspend|resume|rewind)/?"), self.control),
            ("POST", re.compile(rf"instances/{seg.format('id')}/restart/?"), self.restart),
        ]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(tail)
            if match and request.method == method:
                try:
                    return await handler(request, {k: v for k, v in match.groupdict().items() if v})
                except OperationError as exc:
                    return error_response(exc.status, str(exc))
        return error_response(404, f"No management API route for {request.method} {request.path}")

    # ------------------------------------------------------------------ helpers

    def _origin(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def check_status(self, request: web.Request, instance_id: str) -> web.Response:
        urls = management_urls(self._origin(request), self.config, instance_id)
        return web.json_response(urls, status=202, headers={
            "Location": urls["statusQueryGetUri"], "Retry-After": "10"})

    async def _wait(self, request: web.Request, inst: Instance) -> web.Response:
        """``timeout``/``pollingInterval`` mode: answer with the result if it comes in time."""
        try:
            timeout = float(request.query["timeout"])
        except ValueError as exc:
            raise BadRequest("timeout must be a number of seconds") from exc
        if not inst.terminal:
            try:
                await asyncio.wait_for(self.ops.engine.wait_terminal(inst.instance_id), timeout)
            except asyncio.TimeoutError:
                return self.check_status(request, inst.instance_id)
        inst = self.ops.get(inst.instance_id)
        if inst.status == "Completed":
            return web.Response(text=inst.output or "null", content_type="application/json")
        return web.json_response(status_body(inst), status=500 if inst.status == "Failed" else 200)

    # ------------------------------------------------------------------ handlers

    async def start(self, request: web.Request, p: dict[str, str]) -> web.Response:
        input_json = await json_body(request)
        inst = await self.ops.start(p["name"], p.get("id"), input_json, request.query.get("version"))
        if "timeout" in request.query:
            return await self._wait(request, inst)
        return self.check_status(request, inst.instance_id)

    async def get_status(self, request: web.Request, p: dict[str, str]) -> web.Response:
        inst = self.ops.engine.instances.get(p["id"])
        if inst is None:
            return web.Response(status=404)
        show_input = flag(request, "showInput", True)
        history = await self.ops.history(inst) if flag(request, "showHistory", False) else None
        body = status_body(inst, show_input=show_input, history=history,
                           show_history_output=flag(request, "showHistoryOutput", False))
        if not inst.terminal:
            return web.json_response(body, status=202, headers={
                "Location": str(request.url), "Retry-After": "5"})
        failed_500 = inst.status == "Failed" and flag(request, "returnInternalServerErrorOnFailure", False)
        return web.json_response(body, status=500 if failed_500 else 200)

    def _query(self, request: web.Request) -> Query:
        return Query(time_param(request, "createdTimeFrom"), time_param(request, "createdTimeTo"),
                     statuses_param(request), request.query.get("instanceIdPrefix") or None)

    async def list_instances(self, request: web.Request, p: dict[str, str]) -> web.Response:
        found = self.ops.query(self._query(request))
        try:
            top = int(request.query.get("top", DEFAULT_PAGE))
            start = int(request.headers.get("x-ms-continuation-token") or 0)
        except ValueError as exc:
            raise BadRequest("top and x-ms-continuation-token must be integers") from exc
        if top <= 0:
            top = DEFAULT_PAGE
        page = found[start:start + top]
        show_input = flag(request, "showInput", True)
        headers = {}
        if start + top < len(found):
            headers["x-ms-continuation-token"] = str(start + top)
        return web.json_response([status_body(i, show_input=show_input) for i in page],
                                 headers=headers)

    async def purge(self, request: web.Request, p: dict[str, str]) -> web.Response:
        inst = self.ops.get(p["id"])
        deleted = await self.ops.purge([inst])
        return web.json_response({"instancesDeleted": deleted})

    async def purge_by(self, request: web.Request, p: dict[str, str]) -> web.Response:
        if not request.query.get("createdTimeFrom"):
            raise BadRequest("Please provide value for 'createdTimeFrom' parameter.")
        query = self._query(request)
        if query.created_to is None:
            query = Query(query.created_from, time.time(), query.statuses, query.prefix)
        deleted = await self.ops.purge_by(query)
        return web.json_response({"instancesDeleted": deleted}, status=200 if deleted else 404)

    async def raise_event(self, request: web.Request, p: dict[str, str]) -> web.Response:
        if request.content_type != "application/json":
            raise BadRequest("The request content type must be application/json.")
        input_json = await json_body(request)
        await self.ops.raise_event(p["id"], p["event"], input_json)
        return web.Response(status=202)

    async def control(self, request: web.Request, p: dict[str, str]) -> web.Response:
        reason = request.query.get("reason")
        operation: Any = getattr(self.ops, p["op"])
        try:
            await operation(p["id"], reason)
        except OperationError as exc:
            if p["op"] == "rewind" and not isinstance(exc, NotFound):
                # the SDK raises a plain-string body as the message
                return web.json_response(str(exc), status=exc.status)
            raise
        return web.Response(status=202)

    async def restart(self, request: web.Request, p: dict[str, str]) -> web.Response:
        inst = await self.ops.restart(p["id"], flag(request, "restartWithNewInstanceId", True))
        if "timeout" in request.query:
            return await self._wait(request, inst)
        return self.check_status(request, inst.instance_id)
