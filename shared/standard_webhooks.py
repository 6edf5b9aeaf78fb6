"""Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`): how
intake checks what PBXs send, and how callback signs what it sends to a PBX.

Signed content is `{id}.{timestamp}.{raw body}`, HMAC-SHA256 with the base64-decoded secret
(after its `whsec_` prefix), base64-encoded, sent as space-separated `v1,<sig>` entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    """The request is not provably from the sender; the reason is safe to show."""


def decode_secret(secret: str) -> bytes:
    value = secret.strip()
    if value.startswith(SECRET_PREFIX):
        value = value[len(SECRET_PREFIX) :]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret must be `whsec_` followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature for a message (used by the demo and the tests)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    *,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> str:
    """Check the signature on the raw bytes; return the `webhook-id` or raise SignatureError."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(msg_id) > 256 or len(signatures) > 4096:
        raise SignatureError("webhook headers are too long")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a unix time in seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("webhook-timestamp is outside the accepted tolerance")
    offered = [
        entry.split(",", 1)[1]
        for entry in signatures.split()
        if entry.startswith("v1,") and len(entry) > 3
    ]
    for secret in secrets:
        expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
        # Compare every candidate in constant time; any one match is enough.
        if any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in offered):
            return msg_id
    raise SignatureError("no webhook-signature matches")
