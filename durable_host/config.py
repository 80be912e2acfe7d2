"""Host configuration: command line, ``host.json`` and ``local.settings.json``.

Core Tools reads the same two files; keeping their parsing in one place means every other
module receives plain typed values and never touches JSON config or the environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_HUB_NAME = "TestHubName"

# Set in the host process when activities run elsewhere (``--workers`` >= 1, ``--check``), to
# ``worker`` in worker processes, and to ``standalone`` when the host process runs activities itself.
# Azure has no such variable (every Python process runs every kind of function); an app may read it
# to skip, in the dispatcher, work that only activities need, such as loading models, or to say
# once, before the host prints its function listing, what it would otherwise log later.
ROLE_SETTING = "DURABLE_HOST_ROLE"
DISPATCHER_ROLE = "dispatcher"
WORKER_ROLE = "worker"
STANDALONE_ROLE = "standalone"
_SETTING_REF = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class HostConfig:
    """Everything the host needs to know before importing the app."""

    app_dir: Path
    host: str
    port: int
    hub_dir: Path
    workers: int  # worker processes that run activities; 0: the host process runs them itself
    route_prefix: str
    hub_name: str
    max_activities: int
    max_orchestrations: int
    script_file: str = "function_app.py"
    default_version: str | None = None  # ``defaultVersion``: the version of new orchestrations
    storage_provider: str | None = None  # ``storageProvider.type`` for Azure; the host keeps SQLite

    @property
    def public_host(self) -> str:
        """Host name to put in URLs handed to clients (a wildcard bind is not reachable)."""
        if self.host in ("0.0.0.0", "::", ""):
            return "localhost"
        return f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal goes in brackets in a URL

    @property
    def base_url(self) -> str:
        return f"http://{self.public_host}:{self.port}"

    @property
    def hub_path(self) -> Path:
        """One SQLite file per task hub name, as each hub is an independent store on Azure."""
        return self.hub_dir / f"{self.hub_name}.sqlite"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8-sig")
    return json.loads(text) if text.strip() else {}


def load_local_settings(app_dir: Path, environ: MutableMapping[str, str] = os.environ) -> None:
    """Copy ``local.settings.json`` ``Values`` into the environment, as Core Tools does.

    Values already present in the environment win, matching ``func start``.
    """
    values = _read_json(app_dir / "local.settings.json").get("Values") or {}
    for key, value in values.items():
        environ.setdefault(key, "" if value is None else str(value))


def _resolve_setting(value: str, environ: Mapping[str, str]) -> str:
    """Expand ``%AppSetting%`` references, which host.json allows for ``hubName``."""
    return _SETTING_REF.sub(lambda m: environ.get(m.group(1), ""), value)


def _int_setting(durable: dict[str, Any], key: str, default: int) -> int:
    value: Any = durable.get(key, default)
    try:
        return max(1, int(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"host.json: extensions.durableTask.{key} must be an integer") from exc


def build_config(
    app_dir: str | Path,
    *,
    host: str,
    port: int,
    hub_dir: str | Path | None,
    workers: int | None,
    environ: Mapping[str, str] = os.environ,
) -> HostConfig:
    """Combine command-line values with ``host.json`` (after local settings were loaded)."""
    app_path = Path(app_dir).resolve()
    if not (app_path / "host.json").is_file():
        raise FileNotFoundError(f"no host.json in {app_path}: run the host in a function app folder")
    extensions = _read_json(app_path / "host.json").get("extensions") or {}
    http = extensions.get("http") or {}
    durable = extensions.get("durableTask") or {}
    route_prefix = http.get("routePrefix", "api")
    hub_name = (
        _resolve_setting(str(durable.get("hubName") or ""), environ)
        or environ.get("WEBSITE_SITE_NAME")
        or DEFAULT_HUB_NAME
    )
    cores = os.cpu_count() or 1
    if workers is None:
        workers = int(environ.get("FUNCTIONS_WORKER_PROCESS_COUNT", "0") or 0)
    return HostConfig(
        app_dir=app_path,
        host=host,
        port=port,
        hub_dir=Path(hub_dir).resolve() if hub_dir else app_path / ".durable",
        workers=max(0, min(10, workers)),
        route_prefix=route_prefix.strip("/"),
        hub_name=hub_name,
        max_activities=_int_setting(durable, "maxConcurrentActivityFunctions", 10 * cores),
        max_orchestrations=_int_setting(durable, "maxConcurrentOrchestratorFunctions", 10 * cores),
        script_file=environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py"),
        default_version=durable.get("defaultVersion"),
        storage_provider=(durable.get("storageProvider") or {}).get("type"),
    )
