"""HMAC-SHA256 signatures of callback bodies, so a receiver can tell a result came from this app, and when.

The signature covers ``<timestamp>.`` followed by the exact bytes sent, the timestamp (Unix seconds) being
sent in its own header: a receiver that refuses timestamps older than a few minutes cannot be fed a captured
callback again later (the scheme Stripe's webhooks use). Each delivery attempt is signed afresh, so a retry
carries a new timestamp; a receiver that must act once per task de-duplicates on ``task_id``. The receiver
computes the signature over the bytes it read with the shared secret (``CALLBACK_SIGNING_SECRET``) and
compares in constant time (:func:`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Classifier-Signature"
TIMESTAMP_HEADER = "X-Classifier-Timestamp"
#: How old a signed callback :func:`verify` still accepts, in seconds (and how far in the future).
DEFAULT_TOLERANCE_S = 300
_PREFIX = "sha256="


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``."""
    signed = str(timestamp).encode() + b"." + body
    return _PREFIX + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, secret: str, now: float | None = None) -> dict[str, str]:
    """The two headers of one delivery attempt, signed at ``now``."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(body, secret, timestamp)}


def verify(
    body: bytes,
    secret: str,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether the headers are this app's signature of ``body``, made within ``tolerance_s`` of ``now``.

    Header values a client controls may hold anything: a missing, non-numeric or non-ASCII one is False,
    never an exception."""
    if signature is None or timestamp is None or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    expected = sign(body, secret, int(timestamp)).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
