"""Which image URLs the app may fetch: the one URL policy, shared by the API and the activities.

The HTTP API checks a URL when the task is submitted (a 400 before any orchestration exists) and the
preprocess activity checks it again to fetch exactly what the check parsed, so the policy lives here,
below both layers, and imports neither.

URL fetches are an SSRF surface, so a URL is parsed exactly once (by urllib3, the HTTP client itself) and
the fetch is built from that parse (:class:`CheckedUrl`): what the allowlist check saw is what gets
fetched. Two parsers disagreeing about ``http://[::1]:1\\@allowed/`` was how the allowlist used to be
bypassed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

#: Characters parsers disagree about (backslash, whitespace) or that have no business in a URL.
_AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")


class UrlNotAllowedError(ValueError):
    """A URL the policy refuses; the message says why, for the client who sent it."""


@dataclass(frozen=True)
class CheckedUrl:
    """An allowed URL as the fetch will use it: nothing is re-parsed after the check."""

    scheme: str  # "http" or "https"
    host: str  # lower case, IPv6 without brackets: as written in URL_ALLOWED_HOSTS
    port: int
    target: str  # path and query, the request line's target

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _bare_host(host: str) -> str:
    return host.lower().removeprefix("[").removesuffix("]")


def check_url_allowed(
    url: str, allowed_hosts: frozenset[str], *, what: str = "image URL", setting: str = "URL_ALLOWED_HOSTS"
) -> CheckedUrl:
    """Refuse URLs outside the allowlist: fetching arbitrary URLs from a server invites SSRF.

    Only plain ``http(s)://host[:port]/path`` is accepted: no user info, no backslashes, whitespace or
    non-ASCII characters, so there is a single reading of the URL. Hosts are compared literally, so
    ``2130706433`` or ``0177.0.0.1`` are not ``127.0.0.1``. ``what`` and ``setting`` name the kind of URL
    and its allowlist in the messages (image URLs, callback URLs).
    """
    if not url.isascii() or _AMBIGUOUS.search(url):
        raise UrlNotAllowedError(
            f"{what} {url!r} must not contain backslashes, whitespace, control or non-ASCII characters"
        )
    try:
        parts = parse_url(url)
    except LocationParseError:
        raise UrlNotAllowedError(f"{what} {url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.host:
        raise UrlNotAllowedError(f"{what} {url!r} must be an absolute http(s) URL")
    if parts.auth is not None:
        raise UrlNotAllowedError(f"{what} {url!r} must not contain user info ('user@')")
    if not allowed_hosts:
        raise UrlNotAllowedError(f"{what}s are disabled: set {setting} to the hosts to allow")
    host = _bare_host(parts.host)
    if host not in {_bare_host(allowed) for allowed in allowed_hosts}:
        raise UrlNotAllowedError(f"{what} host {host!r} is not in {setting} ({', '.join(sorted(allowed_hosts))})")
    default_port = 443 if parts.scheme == "https" else 80
    return CheckedUrl(parts.scheme, host, parts.port or default_port, parts.request_uri)
