"""HMAC-SHA256 signatures of callback bodies, so a receiver can tell a result came from this app.

The signature covers the exact bytes sent; the receiver computes it over the bytes it read with the
shared secret (``CALLBACK_SIGNING_SECRET``) and compares in constant time (:func:`verify`).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Classifier-Signature"
_PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value: ``sha256=<hex digest>`` (the form GitHub's webhooks use)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(body, secret), header)
