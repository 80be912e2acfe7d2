"""Microsoft's documented HTTP management API (``/runtime/webhooks/durabletask/``).

The same handler also answers on ``/durabletask/``, the path of the extension's local RPC
listener that the Python SDK client calls. Routing is done here rather than by aiohttp so that
an unknown route *or method* answers 404 like the extension (route segments match in any case,
as ASP.NET routing does), and so that no request can end in a 500 for a client mistake.

Query values are read the way the extension's ``TryParse`` calls read them: a value that does
not parse is ignored, never an error. Their names match in any case, as the extension reads them
(``GetQueryNameValuePairs`` builds its collection with ``StringComparer.OrdinalIgnoreCase``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .config import HostConfig
from .events import parse_ts
from .model import Instance, RuntimeStatus
from .operations import (
    BadJson,
    BadRequest,
    BadRequestMessage,
    BadRequestText,
    Gone,
    HubOperations,
    NotFound,
    OperationError,
    PreconditionFailed,
    Query,
)
from .status import status_body, status_json
from .urls import check_status_payload

log = logging.getLogger("durable_host")

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]
DEFAULT_PAGE = 100


def error_response(exc: OperationError) -> web.Response:
    """The extension answers 404 and 410 without a body, other refusals in the ASP.NET error shape."""
    if isinstance(exc, (NotFound, Gone)):
        return web.Response(status=exc.status)
    if isinstance(exc, BadRequestMessage):
        return web.json_response({"Message": str(exc)}, status=exc.status)
    if isinstance(exc, BadRequestText):
        return web.json_response(str(exc), status=exc.status)
    return web.json_response(
        {"Message": exc.summary, "ExceptionMessage": str(exc), "ExceptionType": exc.exception_type, "StackTrace": None},
        status=exc.status,
    )


def _json_bytes(body: bytes, status: int, headers: dict[str, str] | None = None) -> web.Response:
    """What ``web.json_response`` sends, for a body encoded already."""
    return web.Response(body=body, status=status, headers=headers, content_type="application/json", charset="utf-8")


def query(request: web.Request) -> CIMultiDictProxy[str]:
    """The query parameters by name in any case: ``?showhistory=true`` asks for the history, as on Azure."""
    return CIMultiDictProxy(CIMultiDict(request.query))


def flag(request: web.Request, name: str, default: bool) -> bool:
    """.NET ``bool.TryParse``: case-insensitive, so the SDK's ``True`` works; else ``default``."""
    value = query(request).get(name, "").strip().lower()
    return value == "true" if value in ("true", "false") else default


def time_param(request: web.Request, name: str) -> float | None:
    """A date filter; like ``DateTime.TryParse`` in the extension, a bad one is no filter."""
    try:
        return parse_ts(query(request)[name])
    except (KeyError, ValueError):
        return None


def statuses_param(request: web.Request) -> frozenset[RuntimeStatus] | None:
    """``runtimeStatus=A,B``, names as .NET ``Enum.TryParse`` reads them (exact case), or the enum's numbers
    (``1`` is Completed: ``OrchestrationRuntimeStatus`` counts Running, Completed, ContinuedAsNew, ... from 0).

    Unknown names are dropped, and with none left there is no status filter at all. A number always parses,
    even one no status has (``Enum.TryParse`` takes ``99``): such a filter matches nothing, as there.
    """
    values = ",".join(query(request).getall("runtimeStatus", [])).split(",")
    names = {v.strip() for v in values}
    # what Int32.TryParse takes; a longer string of digits does not parse (and int() of 5,000 digits raises)
    numbers = {int(n) for n in names if re.fullmatch(r"[+-]?[0-9]{1,10}", n) and -(2**31) <= int(n) < 2**31}
    by_number = dict(enumerate(RuntimeStatus))
    named = {s for s in RuntimeStatus if s.value in names} | {by_number[n] for n in numbers if n in by_number}
    return frozenset(named) if named or numbers else None


def page_size(request: web.Request) -> int:
    """``top``: the extension ignores a value ``int.TryParse`` refuses, and so a bad one is 100."""
    try:
        top = int(query(request).get("top", ""))
    except ValueError:
        return DEFAULT_PAGE
    return top if top > 0 else DEFAULT_PAGE


def seconds_param(request: web.Request, name: str) -> float | None:
    """A wait-mode parameter in seconds.

    The extension ignores a value that is not a number and starts the instance anyway; a 400
    that leaves nothing started is the safer answer (see the README's differences).
    """
    value = query(request).get(name)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise BadRequest(f"The value '{value}' of query parameter '{name}' is not a number of seconds.")
    return seconds


def wait_timeout(request: web.Request) -> float | None:
    """The timeout of wait mode, or None without it; checked before anything starts.

    Like the extension (with Azure Storage), wait mode needs both ``timeout`` and
    ``pollingInterval``, and an interval longer than the timeout is a bad request. The host
    then waits for the instance to finish rather than polling.
    """
    timeout, interval = seconds_param(request, "timeout"), seconds_param(request, "pollingInterval")
    if timeout is None or interval is None:
        return None
    if interval > timeout:
        raise BadRequest(f"Total timeout {timeout} should be bigger than retry timeout {interval}")
    return timeout


async def json_body(request: web.Request) -> str | None:
    """The request body as compact JSON text of its token, or None when empty."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.dumps(json.loads(raw), separators=(",", ":"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # the parser's depth guard: deeply nested input is the client's error
        raise BadJson("The request body is nested too deeply to be read as JSON.") from exc


class ManagementApi:
    """Routes and handlers of the management API."""

    def __init__(self, ops: HubOperations, config: HostConfig):
        self.ops = ops
        self.config = config
        seg = r"(?P<{}>[^/]+)"
        routes: list[tuple[str, str, Handler]] = [
            ("POST", rf"orchestrators/{seg.format('name')}(?:/{seg.format('id')})?/?", self.start),
            ("GET", r"instances/?", self.list_instances),
            ("DELETE", r"instances/?", self.purge_by),
            ("GET", rf"instances/{seg.format('id')}/?", self.get_status),
            ("DELETE", rf"instances/{seg.format('id')}/?", self.purge),
            ("POST", rf"instances/{seg.format('id')}/raiseEvent/{seg.format('event')}/?", self.raise_event),
            ("POST", rf"instances/{seg.format('id')}/(?P<op>terminate|suspend|resume|rewind)/?", self.control),
            ("POST", rf"instances/{seg.format('id')}/restart/?", self.restart),
        ]
        self._routes = [(method, re.compile(pattern, re.IGNORECASE), handler) for method, pattern, handler in routes]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(tail)
            if match and request.method == method:
                try:
                    return await handler(request, {k: v for k, v in match.groupdict().items() if v})
                except OperationError as exc:
                    return error_response(exc)
        return web.Response(status=404)

    # ------------------------------------------------------------------ helpers

    def _origin(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def check_status(self, request: web.Request, instance_id: str) -> web.Response:
        urls = check_status_payload(self._origin(request), self.config, instance_id)
        return web.json_response(urls, status=202, headers={"Location": urls["statusQueryGetUri"], "Retry-After": "10"})

    async def _status_response(self, request: web.Request, inst: Instance, failed_status: int) -> web.Response:
        """The status answer of ``GET instances/{id}``, honouring its ``show*`` flags."""
        show_input = flag(request, "showInput", True)
        if flag(request, "showHistory", False) and inst.status != RuntimeStatus.Pending:  # as the extension
            history = await self.ops.history(inst)
            body = json.dumps(
                status_body(
                    inst,
                    show_input=show_input,
                    history=history,
                    show_history_output=flag(request, "showHistoryOutput", False),
                )
            ).encode()
        else:
            body = status_json(inst, show_input=show_input)
        if not inst.terminal:
            return _json_bytes(body, status=202, headers={"Location": str(request.url), "Retry-After": "5"})
        return _json_bytes(body, status=failed_status if inst.status == RuntimeStatus.Failed else 200)

    async def _started(self, request: web.Request, instance_id: str, timeout: float | None) -> web.Response:
        """The answer to a start or restart: the check-status 202, or in wait mode the result.

        A wait that ends in time answers 200 with the output when Completed, else with the
        status (a Failed one too: the extension asks its status handler for no 500 here).
        """
        if timeout is None:
            return self.check_status(request, instance_id)
        inst = self.ops.get(instance_id)
        if not inst.terminal:
            try:
                await asyncio.wait_for(self.ops.engine.wait_terminal(instance_id), timeout)
            except TimeoutError:
                return self.check_status(request, instance_id)
            inst = self.ops.get(instance_id)
        if inst.status == RuntimeStatus.Completed:
            return web.Response(text=inst.output or "null", content_type="application/json")
        return await self._status_response(request, inst, failed_status=200)

    # ------------------------------------------------------------------ handlers

    async def start(self, request: web.Request, p: dict[str, str]) -> web.Response:
        timeout = wait_timeout(request)
        input_json = await json_body(request)
        inst = await self.ops.start(p["name"], p.get("id"), input_json, query(request).get("version"))
        return await self._started(request, inst.instance_id, timeout)

    async def get_status(self, request: web.Request, p: dict[str, str]) -> web.Response:
        inst = self.ops.get(p["id"])
        failed_500 = flag(request, "returnInternalServerErrorOnFailure", False)
        return await self._status_response(request, inst, failed_status=500 if failed_500 else 200)

    def _query(self, request: web.Request) -> Query:
        return Query(
            time_param(request, "createdTimeFrom"),
            time_param(request, "createdTimeTo"),
            statuses_param(request),
            query(request).get("instanceIdPrefix") or None,
        )

    async def list_instances(self, request: web.Request, p: dict[str, str]) -> web.Response:
        """One page of instances; the continuation header is always sent, empty on the last page."""
        found = self.ops.query(self._query(request))
        try:
            start = int(request.headers.get("x-ms-continuation-token") or 0)
        except ValueError:
            start = -1
        if start < 0:
            raise BadRequest("x-ms-continuation-token must be a token this host sent")
        end = start + page_size(request)
        show_input = flag(request, "showInput", True)
        return web.json_response(
            [status_body(i, show_input=show_input) for i in found[start:end]],
            headers={"x-ms-continuation-token": str(end) if end < len(found) else ""},
        )

    async def purge(self, request: web.Request, p: dict[str, str]) -> web.Response:
        inst = self.ops.get(p["id"])
        if not inst.terminal:  # only finished instances are purged; the extension answers 0 deleted as 404
            raise NotFound(f"Instance {inst.instance_id} is {inst.status.value}: only a finished one is purged.")
        deleted = await self.ops.purge([inst])
        return web.json_response({"instancesDeleted": deleted})

    async def purge_by(self, request: web.Request, p: dict[str, str]) -> web.Response:
        filters = self._query(request)
        if filters.created_from is None:
            raise BadRequestText("Please provide value for 'createdTimeFrom' parameter.")
        if filters.created_to is None:
            filters = Query(filters.created_from, time.time(), filters.statuses, filters.prefix)
        deleted = await self.ops.purge_by(filters)
        if not deleted:
            raise NotFound("No instances matched the purge filter.")
        return web.json_response({"instancesDeleted": deleted})

    async def raise_event(self, request: web.Request, p: dict[str, str]) -> web.Response:
        self.ops.active(p["id"])  # 404 and 410 come before the content checks, as in the extension
        if request.content_type != "application/json":
            raise BadRequestMessage("Only application/json request content is supported")
        input_json = await json_body(request)
        if input_json is None:  # the extension's JToken.Load refuses empty content; start allows it
            raise BadJson("The request body is empty: an event's data must be JSON (send null for none).")
        await self.ops.raise_event(p["id"], p["event"], input_json)
        return web.Response(status=202)

    async def control(self, request: web.Request, p: dict[str, str]) -> web.Response:
        reason = query(request).get("reason")
        operation: Any = getattr(self.ops, p["op"].lower())
        try:
            await operation(p["id"], reason)
        except PreconditionFailed as exc:
            # rewind of an unfinished instance: the SDK raises a plain-string body as the message
            return web.json_response(str(exc), status=exc.status)
        return web.Response(status=202)

    async def restart(self, request: web.Request, p: dict[str, str]) -> web.Response:
        timeout = wait_timeout(request)
        inst = await self.ops.restart(p["id"], flag(request, "restartWithNewInstanceId", True))
        return await self._started(request, inst.instance_id, timeout)
