"""Settings of the queue and timer triggers: ``host.json`` ``extensions.queues`` and app settings.

``config.py`` reads what the host needs before importing the app; these settings only matter to
the trigger listeners, so they are parsed here, once, into typed values with Azure's defaults.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_TIMESPAN = re.compile(r"(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2}(?:\.\d+)?))?")
_SETTING_REF = re.compile(r"%([^%]+)%")
#: Seconds a received message stays invisible while its function runs (Azure: 10 minutes, renewed
#: halfway while the function still runs); a crashed host's messages reappear after it.
LEASE_SETTING = "DURABLE_HOST_QUEUE_LEASE_SECONDS"
DEFAULT_LEASE_S = 600
#: The Azure queue listener's shortest polling delay (``QueuePollingIntervals.Minimum``).
MIN_POLLING_INTERVAL_S = 0.1


class MessageEncoding(StrEnum):
    """``extensions.queues.messageEncoding``: how message text maps to the function's bytes."""

    BASE64 = "base64"
    NONE = "none"


@dataclass(frozen=True)
class QueuesOptions:
    """``extensions.queues``, with the Storage Queues extension 5.x defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    max_polling_interval_s: float = 60.0
    visibility_timeout_s: float = 0.0
    message_encoding: MessageEncoding = MessageEncoding.BASE64
    lease_s: int = DEFAULT_LEASE_S


def parse_timespan(value: Any, what: str) -> float:
    """A .NET ``TimeSpan`` (``[d.]hh:mm[:ss[.fff]]``) or a number of milliseconds, in seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000
    match = _TIMESPAN.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"{what}: '{value}' is not a TimeSpan (hh:mm:ss)")
    days, hours, minutes = int(match["days"] or 0), int(match["h"]), int(match["m"])
    if hours > 23 or minutes > 59:
        raise ValueError(f"{what}: '{value}' is not a TimeSpan (hh:mm:ss)")
    return days * 86400 + hours * 3600 + minutes * 60 + float(match["s"] or 0)


def _int(queues: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = queues.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"host.json: extensions.queues.{key} must be an integer from {low} to {high}")
    return value


def queues_options(
    app_dir: Path, environ: Mapping[str, str] = os.environ, cpu_count: int | None = None
) -> QueuesOptions:
    """Read ``extensions.queues``; a bad value is an error naming the setting, as the host refuses it."""
    host_json = app_dir / "host.json"
    text = host_json.read_text(encoding="utf-8-sig") if host_json.is_file() else ""
    extensions = (json.loads(text) if text.strip() else {}).get("extensions") or {}
    queues: dict[str, Any] = extensions.get("queues") or {}
    batch_size = _int(queues, "batchSize", 16, 1, 32)
    # Azure's default: half a batch per core (the extension counts the instance's cores)
    threshold = _int(queues, "newBatchThreshold", (cpu_count or os.cpu_count() or 1) * batch_size // 2, 0, 1 << 20)
    max_polling = parse_timespan(queues.get("maxPollingInterval", "00:01:00"), "extensions.queues.maxPollingInterval")
    if max_polling < MIN_POLLING_INTERVAL_S:
        raise ValueError("host.json: extensions.queues.maxPollingInterval must be at least 100 ms")
    encoding = str(queues.get("messageEncoding", MessageEncoding.BASE64)).lower()
    if encoding not in tuple(MessageEncoding):
        raise ValueError("host.json: extensions.queues.messageEncoding must be 'base64' or 'none'")
    lease = environ.get(LEASE_SETTING, "") or str(DEFAULT_LEASE_S)
    if not lease.isdigit() or int(lease) < 1:
        raise ValueError(f"{LEASE_SETTING} must be a whole number of seconds >= 1")
    return QueuesOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_dequeue_count=_int(queues, "maxDequeueCount", 5, 1, 1 << 20),
        max_polling_interval_s=max_polling,
        visibility_timeout_s=parse_timespan(
            queues.get("visibilityTimeout", "00:00:00"), "extensions.queues.visibilityTimeout"
        ),
        message_encoding=MessageEncoding(encoding),
        lease_s=int(lease),
    )


def resolve_setting_refs(value: str, environ: Mapping[str, str] = os.environ) -> str:
    """Expand ``%AppSetting%`` in a binding property; an unset setting is an error, as on Azure."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ValueError(f"'%{name}%' does not resolve to a value: app setting '{name}' is not set")
        return environ[name]

    return _SETTING_REF.sub(lookup, value)


def schedule_time_zone(environ: Mapping[str, str] = os.environ) -> tzinfo | None:
    """``WEBSITE_TIME_ZONE`` (an IANA name, as on Linux plans); ``None`` means UTC."""
    name = environ.get("WEBSITE_TIME_ZONE", "").strip()
    if not name or name.upper() == "UTC":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"WEBSITE_TIME_ZONE '{name}' is not a known time zone") from exc
