"""HTTP triggers: ASP.NET-style route templates and the worker's request/response mapping.

Functions receive the same ``azure.functions.HttpRequest`` the worker builds and may return an
``HttpResponse`` or a ``str``; a durable client binding receives the JSON the extension
injects, so ``DurableOrchestrationClient`` works unchanged against this host.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import azure_worker
from .indexing import HttpFunction
from .invoke import Invoker

log = logging.getLogger("durable_host")

_PARAM = re.compile(
    r"\{(?P<star>\*{1,2})?(?P<name>\w+)(?P<constraints>(?::[^:{}?=]+(?:\([^)]*\))?)*)"
    r"(?P<optional>\?)?(?:=(?P<default>[^}]*))?\}"
)
_CONSTRAINT = re.compile(r":(\w+)(?:\(([^)]*)\))?")
_ENCODED_SLASH = re.compile("(%2F)", re.IGNORECASE)


def request_path(raw_path: str) -> str:
    """The path routing sees, decoded as Kestrel decodes it: every escape but ``%2F``.

    Decoding ``%2F`` would change which segments the path has, so on Azure ``/api/tasks/a%2Fb`` is one
    segment and a route parameter gets ``a%2Fb``; aiohttp's ``request.path`` would give ``a/b``, two.
    """
    return "".join(piece if index % 2 else unquote(piece) for index, piece in enumerate(_ENCODED_SLASH.split(raw_path)))


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _is_decimal(v: str) -> bool:
    try:
        Decimal(v)
        return True
    except InvalidOperation:
        return False


def _is_datetime(v: str) -> bool:
    try:
        datetime.fromisoformat(v)
        return True
    except ValueError:
        return False


def _is_guid(v: str) -> bool:
    try:
        uuid.UUID(v)
        return True
    except ValueError:
        return False


def _constraint(name: str, arg: str | None) -> Callable[[str], bool]:
    """One ASP.NET route constraint as a predicate on the raw segment value."""
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: re.fullmatch(r"-?\d+", v) is not None and -(2**31) <= int(v) < 2**31,
        "long": lambda v: re.fullmatch(r"-?\d+", v) is not None and -(2**63) <= int(v) < 2**63,
        "bool": lambda v: v.lower() in ("true", "false"),
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "guid": _is_guid,
        "double": _is_float,
        "float": _is_float,
        "decimal": _is_decimal,
        "datetime": _is_datetime,
        "required": lambda v: v != "",
    }
    if name in simple:
        return simple[name]
    args = [a.strip() for a in (arg or "").split(",")]
    if name == "minlength":
        return lambda v: len(v) >= int(args[0])
    if name == "maxlength":
        return lambda v: len(v) <= int(args[0])
    if name == "length":
        return (
            (lambda v: len(v) == int(args[0])) if len(args) == 1 else (lambda v: int(args[0]) <= len(v) <= int(args[1]))
        )
    number = re.compile(r"-?\d+")
    if name == "min":
        return lambda v: number.fullmatch(v) is not None and int(v) >= int(args[0])
    if name == "max":
        return lambda v: number.fullmatch(v) is not None and int(v) <= int(args[0])
    if name == "range":
        return lambda v: number.fullmatch(v) is not None and int(args[0]) <= int(v) <= int(args[1])
    if name == "regex":
        pattern = re.compile(arg or "", re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    raise ValueError(f"unsupported route constraint '{name}'")


@dataclass
class Route:
    """A compiled route template bound to its function."""

    function: HttpFunction
    template: str
    regex: re.Pattern[str]
    checks: dict[str, list[Callable[[str], bool]]]
    defaults: dict[str, str]
    rank: tuple[Any, ...]

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        values = {k: v for k, v in m.groupdict().items() if v is not None}
        for name, checks in self.checks.items():
            if name in values and not all(check(values[name]) for check in checks):
                return None
        return {**self.defaults, **values}


def compile_route(function: HttpFunction, prefix: str) -> Route:
    template = "/".join(p for p in (prefix, function.route) if p)
    parts: list[str] = []
    checks: dict[str, list[Callable[[str], bool]]] = {}
    defaults: dict[str, str] = {}
    literals = params = 0
    catch_all = False
    for index, segment in enumerate(template.split("/")):
        sep = "/" if index else ""
        pieces, pos, optional = [], 0, False
        for m in _PARAM.finditer(segment):
            pieces.append(re.escape(segment[pos : m.start()]))
            name = m.group("name")
            if m.group("star"):
                pieces.append(f"(?P<{name}>.*)")
                catch_all = optional = True
            else:
                pieces.append(f"(?P<{name}>[^/]+)")
                optional = optional or bool(m.group("optional")) or m.group("default") is not None
            if m.group("default") is not None:
                defaults[name] = m.group("default")
            checks[name] = [_constraint(c, a) for c, a in _CONSTRAINT.findall(m.group("constraints") or "")]
            params += 1
            pos = m.end()
        literal = segment[pos:]
        pieces.append(re.escape(literal))
        if pos == 0:
            literals += 1
        body = "".join(pieces)
        parts.append(f"(?:{sep}{body})?" if optional else f"{sep}{body}")
    regex = re.compile("".join(parts), re.IGNORECASE)
    return Route(function, template, regex, checks, defaults, rank=(catch_all, -literals, params))


class HttpTriggers:
    """Matches requests to HTTP functions and invokes them."""

    def __init__(self, functions: list[HttpFunction], prefix: str, invoker: Invoker, client_json: str):
        self.routes = sorted((compile_route(f, prefix) for f in functions), key=lambda r: r.rank)
        self.invoker = invoker
        self.client_json = client_json

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            methods = route.function.methods
            if methods and method not in methods:
                continue
            values = route.match(path)
            if values is not None:
                return route, values
        return None

    async def handle(self, request: web.Request, route: Route, route_params: dict[str, str]) -> web.StreamResponse:
        function = route.function
        body = await request.read()
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        params: dict[str, str] = {}
        for key, value in request.query.items():
            params.setdefault(key, value)
        req = azure_worker.decode_http_request(request.method, str(request.url), headers, params, route_params, body)
        kwargs: dict[str, Any] = {function.trigger_param: req}
        if function.client_param:
            kwargs[function.client_param] = azure_worker.decode("durableClient", "string", self.client_json)
        try:
            result = await self.invoker.call(function, kwargs)
        except Exception:  # noqa: BLE001 - a function that raises is a 500, as the worker answers (invoke.py logs it)
            return web.Response(status=500)
        try:
            output = azure_worker.encode("http", result)
        except (TypeError, ValueError) as exc:  # what Azure's worker fails the invocation with
            log.error("Function '%s': %s", function.name, exc)
            return web.Response(status=500)
        return to_response(output)


def to_response(output: Any) -> web.Response:
    """The Functions host's answer for the worker's encoded ``$return`` (``str`` or ``HttpResponse``)."""
    if output.type == "string":
        return web.Response(text=output.value, content_type="text/plain")
    value = output.value
    response = web.Response(
        status=int(value["status_code"].value),
        body=value["body"].value or b"",
        headers={name: datum.value for name, datum in value["headers"].items()},
    )
    for cookie in value["cookies"] or ():
        for morsel in cookie.values():
            response.headers.add("Set-Cookie", morsel.OutputString())
    return response
