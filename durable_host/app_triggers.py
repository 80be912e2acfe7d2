"""The app's queue and timer triggers, resolved once, when the app is loaded.

Resolving reads ``host.json``'s ``extensions.queues`` and the app settings the triggers name
(``%Setting%``, connections, ``WEBSITE_TIME_ZONE``). The listing and the listeners use this one
result, so they cannot disagree, and a bad ``extensions.queues`` stops the host before it starts,
as on Azure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from .indexing import FunctionIndex
from .queue_triggers import QueueTarget, resolve_target
from .timer_triggers import TimerTarget, resolve_timer
from .trigger_settings import QueuesOptions, queues_options


@dataclass(frozen=True)
class AppTriggers:
    """Each queue and timer function with what it resolved to (or why it cannot run)."""

    queue_options: QueuesOptions = field(default_factory=QueuesOptions)
    queues: tuple[QueueTarget, ...] = ()
    timers: tuple[TimerTarget, ...] = ()

    def listing(self, now: datetime) -> list[str]:
        """One ``name: what`` line per function, for the host's startup listing."""
        return [f"{q.function.name}: {q.describe()}" for q in self.queues] + [
            f"{t.function.name}: {t.describe(now)}" for t in self.timers
        ]


def resolve_triggers(index: FunctionIndex, app_dir: Path, environ: Mapping[str, str] = os.environ) -> AppTriggers:
    """``host.json`` is read only for an app with queue functions, as the extension loads only then."""
    return AppTriggers(
        queues_options(app_dir, environ) if index.queues else QueuesOptions(),
        tuple(resolve_target(f, environ) for f in index.queues),
        tuple(resolve_timer(f, environ) for f in index.timers),
    )


@dataclass
class AppIndex(FunctionIndex):
    """The function index with its triggers resolved: what the listing and the host are given."""

    triggers: AppTriggers = field(default_factory=AppTriggers)

    @staticmethod
    def load(index: FunctionIndex, app_dir: Path, environ: Mapping[str, str] = os.environ) -> AppIndex:
        kinds = {f.name: getattr(index, f.name) for f in fields(FunctionIndex)}
        return AppIndex(**kinds, triggers=resolve_triggers(index, app_dir, environ))
