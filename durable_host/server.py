"""Wires the host together and serves it: the ``func start`` of this package."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from . import azure_worker, logs
from .activities import ActivityDispatcher, WorkerProcesses
from .app_triggers import AppIndex
from .azure_worker import IndexingError
from .config import HostConfig
from .engine import Engine
from .http_triggers import HttpTriggers, request_path
from .indexing import FunctionInfo, index_functions, load_app
from .invoke import Invoker, default_thread_count
from .management import ManagementApi
from .monitor import add_routes as add_monitor_routes
from .monitor import monitor_url
from .operations import HubOperations
from .queue_triggers import QueueTriggers
from .store import Store
from .timer_triggers import TimerTriggers
from .urls import RPC_PATH, WEBHOOK_PATH, client_binding

#: Azure Functions refuses a request over 100 MB (104,857,600 bytes) before any function runs, with a 413: a
#: larger body accepted here would be a green local run that Azure refuses.
MAX_REQUEST_BYTES = 100 * 1024 * 1024

log = logging.getLogger("durable_host")


def load_index(config: HostConfig) -> AppIndex:
    index = index_functions(load_app(config.app_dir, config.script_file))
    if index.entities:
        names = ", ".join(sorted(f.name for f in index.entities.values()))
        raise IndexingError(f"entity functions are not supported by durable_host: {names}")
    return AppIndex.load(index, config.app_dir)  # a bad extensions.queues stops the host, as on Azure


def print_functions(config: HostConfig, index: AppIndex) -> None:
    lines = ["", "Functions:", ""]
    for f in index.http:
        methods = ",".join(f.methods) if f.methods else "ALL"
        route = "/".join(p for p in (config.route_prefix, f.route) if p)
        lines.append(f"        {f.name}: [{methods}] {config.base_url}/{route}")
    lines.extend(f"        {line}" for line in index.triggers.listing(datetime.now(UTC)))
    for kind, functions in (("orchestrationTrigger", index.orchestrators), ("activityTrigger", index.activities)):
        for durable in functions.values():
            lines.append(f"        {durable.name}: {kind}")
    for name, reason in index.skipped:
        lines.append(f"        {name}: skipped ({reason})")
    lines.append("")
    lines.append(f"Task hub '{config.hub_name}' at {config.hub_path}")
    lines.append(f"Monitor: {monitor_url(config.base_url)}")
    if config.storage_provider:
        lines.append(
            f"host.json storageProvider '{config.storage_provider}' applies on Azure only; "
            "this host keeps the task hub above"
        )
    if config.workers:
        plural = "es" if config.workers > 1 else ""
        lines.append(f"Activities run in {config.workers} worker process{plural}")
    logs.flush()  # lines logged while the app was imported come before the listing
    print("\n".join(lines), flush=True)


class Host:
    """One running host: store, engine, activity workers and the HTTP server."""

    def __init__(self, config: HostConfig, index: AppIndex, processes: WorkerProcesses | None = None):
        self.config = config
        self.index = index
        self.processes = processes  # started before this process indexed the app (see __main__); None: start() does
        self.pool = ThreadPoolExecutor(max_workers=default_thread_count(), thread_name_prefix="worker")
        self.invoker = Invoker(self.pool, str(config.app_dir))
        self.store = Store(config.hub_path)
        self.engine = Engine(index, self.store, default_version=config.default_version)
        self.ops = HubOperations(self.engine)
        self.management = ManagementApi(self.ops, config)
        self.client_json = json.dumps(client_binding(config))
        self.triggers = HttpTriggers(index.http, config.route_prefix, self.invoker, self.client_json)
        triggers = index.triggers
        self.queue_triggers = QueueTriggers(triggers.queues, triggers.queue_options, self.invoke_trigger)
        self.timer_triggers = TimerTriggers(triggers.timers, self.store, self.invoke_trigger)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.start(loop)
        processes = self.processes
        if processes is None and self.config.workers:
            processes = WorkerProcesses(self.config.workers, self.config.app_dir, self.config.script_file)
        self.engine.activities = ActivityDispatcher(
            self.index, self.invoker, self.config.max_activities, self.engine.on_activity_done, processes
        )
        self.engine.activities.start()
        self.engine.recover()
        self.engine.start()
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        add_monitor_routes(app.router)  # before the catch-all, which sends the webhook prefix to management
        # [\s\S], not ".": a path with an encoded newline (/api/tasks/%0A) is a function's, not aiohttp's 404
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.dispatch)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port, backlog=4096)
        await site.start()
        self.queue_triggers.start()  # after the server: their durable clients call its management API
        self.timer_triggers.start()

    async def invoke_trigger(self, function: FunctionInfo, kwargs: dict[str, Any]) -> Any:
        """Run a queue or timer function with the durable client binding HTTP functions get."""
        if function.client_param:
            kwargs[function.client_param] = azure_worker.decode("durableClient", "string", self.client_json)
        return await self.invoker.call(function, kwargs)

    async def stop(self) -> None:
        # timers first (cancelling is instant), then the queue functions, which may still call the management API
        await self.timer_triggers.stop()
        await self.queue_triggers.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.engine.stop()
        if self.engine.activities is not None:
            await self.engine.activities.stop()
        await self.store.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request_path(request.rel_url.raw_path)
        folded = path.lower()  # ASP.NET matches route literals case-insensitively
        for base in (WEBHOOK_PATH, RPC_PATH):
            if folded == base or folded.startswith(base + "/"):
                request.match_info["tail"] = path[len(base) + 1 :]
                return await self.management.handle(request)
        if path == "/admin/host/status":
            return web.json_response({"state": "Running", "version": "durable_host"})
        found = self.triggers.find(request.method, path.strip("/"))
        if found is None:
            return web.Response(status=404)
        return await self.triggers.handle(request, *found)


async def serve(config: HostConfig, index: AppIndex, processes: WorkerProcesses | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly (queued writes are committed)."""
    host = Host(config, index, processes)
    await host.start()
    print_functions(config, index)
    log.info("Host started: listening on %s", config.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("Stopping host...")
    await host.stop()
    log.info("Host stopped.")
