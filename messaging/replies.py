"""What a ``reply_to`` names: a storage queue, or a callback URL allowed by ``CALLBACK_ALLOWED_HOSTS``.

One decision, made the same way when a task is submitted (a 400 or a poison message for a bad one) and
when its outcome is delivered (the URL is checked again and fetched exactly as checked).
"""

from __future__ import annotations

import re
from enum import StrEnum

from settings import Settings
from url_policy import CheckedUrl, UrlNotAllowedError, check_url_allowed

#: Azure's queue name rule: 3-63 lowercase letters, digits and single hyphens, not at either end.
QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
#: Queues a reply must never land in: the Durable Functions backend's own (``<hub>-control-NN``,
#: ``<hub>-workitems``), the Functions host's (``azure-webjobs-*``) and any poison queue.
RESERVED_QUEUE = re.compile(r".*-control-\d{2}|.*-workitems|azure-webjobs-.*|.*-poison")
#: Plain http is accepted only to these hosts (a test server on the same machine); elsewhere https.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ReplyError(ValueError):
    """A ``reply_to`` that cannot be used; the message says why and what to set."""


class ReplyKind(StrEnum):
    QUEUE = "queue"
    CALLBACK = "callback"


def reply_kind(reply_to: str) -> ReplyKind:
    return ReplyKind.CALLBACK if reply_to.lower().startswith(("http://", "https://")) else ReplyKind.QUEUE


def check_callback_url(url: str, settings: Settings) -> CheckedUrl:
    """An allowed callback URL; callbacks are signed, so without a secret there are none."""
    if not settings.callback_signing_secret:
        raise ReplyError(
            "callback URLs are disabled: set CALLBACK_SIGNING_SECRET (the HMAC key callbacks are signed with; "
            "a Key Vault reference the platform could not resolve counts as unset)"
        )
    try:
        checked = check_url_allowed(
            url, settings.callback_allowed_hosts, what="callback URL", setting="CALLBACK_ALLOWED_HOSTS"
        )
    except UrlNotAllowedError as exc:
        raise ReplyError(str(exc)) from None
    if checked.scheme != "https" and checked.host not in LOOPBACK_HOSTS:
        raise ReplyError(
            f"callback URL {url!r} must use https (plain http only to {', '.join(sorted(LOOPBACK_HOSTS))})"
        )
    return checked


def check_queue_name(name: str, settings: Settings) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise ReplyError(
            f"reply queue {name!r} is not a valid queue name (3-63 lowercase letters, digits and single hyphens), "
            "nor an http(s) callback URL"
        )
    if name == settings.task_queue_name or RESERVED_QUEUE.fullmatch(name):
        raise ReplyError(f"reply queue {name!r} is one of the app's or the Functions host's own queues")
    if not (settings.queue_connection_string or settings.queue_service_uri):
        raise ReplyError(
            "reply queues need a storage account: set AzureWebJobsStorage (or AzureWebJobsStorage__queueServiceUri)"
        )
    return name


def check_reply_to(reply_to: str, settings: Settings) -> ReplyKind:
    """The kind of ``reply_to`` once it passed its checks, else :class:`ReplyError`."""
    kind = reply_kind(reply_to)
    if kind is ReplyKind.CALLBACK:
        check_callback_url(reply_to, settings)
    else:
        check_queue_name(reply_to, settings)
    return kind
