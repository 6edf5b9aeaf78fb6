"""Standard Webhooks signatures: `whsec_` secrets and `v1,<base64 HMAC-SHA256>` over id.ts.body."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable

from shared import standard_webhooks

SECRET_PREFIX = standard_webhooks.SECRET_PREFIX
# 24 random bytes, as Svix and the Standard Webhooks libraries make them.
SECRET_BYTES = 24


def new_secret() -> str:
    """A fresh signing secret, shown to the endpoint's owner once."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_message_id() -> str:
    """A `webhook-id`: unique per event and endpoint, the same on every try."""
    return f"msg_{secrets.token_hex(16)}"


def signature(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,...` signature of the body as sent at `timestamp` (Unix seconds): the same
    rule intake checks PBXs' webhooks with."""
    return standard_webhooks.sign(secret, message_id, timestamp, body)


def signature_header(
    secrets_: Iterable[str], *, message_id: str, timestamp: int, body: bytes
) -> str:
    """`webhook-signature`: one signature per valid secret, space-separated (after a
    rotation, both the new and the old secret sign until the old one expires)."""
    return " ".join(
        signature(secret, message_id=message_id, timestamp=timestamp, body=body)
        for secret in secrets_
    )
