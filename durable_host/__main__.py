"""``python -m durable_host``: start the host in a function app folder, like ``func start``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

from . import logs
from .activities import WorkerProcesses
from .azure_worker import IndexingError
from .config import DISPATCHER_ROLE, ROLE_SETTING, STANDALONE_ROLE, build_config, load_local_settings
from .server import load_index, print_functions, serve
from .store import HubInUseError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m durable_host", description="Run an Azure Durable Functions Python v2 app locally."
    )
    parser.add_argument(
        "--app-dir",
        default=env("DURABLE_HOST_APP_DIR", "."),
        help="function app folder (host.json, function_app.py); default: cwd",
    )
    parser.add_argument(
        "--host", default=env("DURABLE_HOST_ADDRESS", "127.0.0.1"), help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=int(env("DURABLE_HOST_PORT", "7071")), help="port to listen on (default 7071)"
    )
    parser.add_argument(
        "--hub-dir",
        default=env("DURABLE_HOST_HUB_DIR"),
        help="folder of the task hub databases (default <app-dir>/.durable)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that run activities (default FUNCTIONS_WORKER_PROCESS_COUNT, else 0: the host runs them)",
    )
    parser.add_argument(
        "--log-level",
        default=env("DURABLE_HOST_LOG_LEVEL", "INFO"),
        help="INFO (default) prints one line per invocation; WARNING is quiet",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="index the app with Azure's worker checks, list its functions, exit (0: Azure's worker would load it)",
    )
    return parser.parse_args(argv)


#: Objects allocated between young-generation collections; Python's default is 2,000.
GC_YOUNG_THRESHOLD = 20_000


def settle_gc() -> None:
    """Keep the cyclic garbage collector off the app's import-time objects, and run it less often.

    Importing the app imports the SDKs, aiohttp, SQLAlchemy and the app itself: about 100,000 objects tracked
    by the collector (420,000 while the app imported torch at load; the figures below are of then), living as
    long as the process, which every older-generation collection would scan again,
    while each orchestrator episode and HTTP request allocates thousands of short-lived ones that trigger
    collections. Frozen, they are never scanned. In A/B runs of the system benchmark (two rounds,
    ResNet18) the host process spent about 13 % less CPU per 1-image task, and every phase ran 2-8 % more
    images per second.
    """
    gc.collect()  # what is garbage already is not frozen with the rest
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older * 2, oldest * 2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level)
    app_dir = os.path.abspath(args.app_dir)
    load_local_settings(Path(app_dir))
    try:
        config = build_config(app_dir, host=args.host, port=args.port, hub_dir=args.hub_dir, workers=args.workers)
        # as on Azure, the app (and every worker process) sees how many Python processes run functions
        os.environ["FUNCTIONS_WORKER_PROCESS_COUNT"] = str(max(1, config.workers))
        # with no activity to run here, the app may skip what only activities need
        os.environ[ROLE_SETTING] = DISPATCHER_ROLE if args.check or config.workers else STANDALONE_ROLE
    except (FileNotFoundError, IndexingError, ValueError) as exc:
        return _cannot_start(exc)
    # The worker processes import the app themselves: started first, they do it while this process does (and
    # while the app's own start work runs here, such as a dispatcher's weights report). Until serve() handles
    # SIGTERM, it ends the start through the finally below, so that they do not outlive it.
    signal.signal(signal.SIGTERM, _stop_starting)
    spawn = config.workers and not args.check
    processes = WorkerProcesses(config.workers, config.app_dir, config.script_file) if spawn else None
    try:
        index = load_index(config)
        if args.check:
            print_functions(config, index)
            return 0
        settle_gc()
        asyncio.run(serve(config, index, processes))
    except (FileNotFoundError, IndexingError, ValueError, HubInUseError) as exc:
        return _cannot_start(exc)
    finally:
        if processes is not None:  # after a clean stop they have exited already; after a failed start, at once
            processes.shutdown(grace=0.0)
    return 0


def _stop_starting(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _cannot_start(exc: Exception) -> int:
    logs.flush()  # what was logged before the failure comes before it
    print(f"durable_host: cannot start: {exc}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
