"""The monitor page: orchestration instances and their history in a browser.

Plain HTML, CSS and JavaScript modules under ``static/``, served as they are (no build step, nothing
from the internet). The page knows nothing about the app: it reads and drives instances only through
the documented HTTP management API, so the same files work against a function app on Azure given its
base URL and ``durabletask_extension`` system key (see the README's "Monitor page").
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..urls import WEBHOOK_PATH

#: Under the management API's prefix, where no app route can be (the extension owns that path on Azure).
MONITOR_PATH = f"{WEBHOOK_PATH}/monitor/"
STATIC_DIR = Path(__file__).parent / "static"
_CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def monitor_url(base_url: str) -> str:
    """The page's address on a host whose origin is ``base_url``."""
    return base_url.rstrip("/") + MONITOR_PATH


def static_files() -> dict[str, Path]:
    """The files the page is made of, by name; nothing else under the path is served."""
    return {p.name: p for p in sorted(STATIC_DIR.iterdir()) if p.suffix in _CONTENT_TYPES and p.is_file()}


async def _redirect(request: web.Request) -> web.StreamResponse:
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPFound(MONITOR_PATH + query)


async def _serve(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    path = static_files().get(name)
    if path is None:
        return web.Response(status=404)
    return web.Response(
        body=path.read_bytes(),
        content_type=_CONTENT_TYPES[path.suffix],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the page's routes; call before any catch-all route so that these match first."""
    router.add_get(MONITOR_PATH.rstrip("/"), _redirect)
    router.add_get(MONITOR_PATH, _serve)
    router.add_get(MONITOR_PATH + "{name}", _serve)
