"""Signing webhooks the way a sender does, with the `standardwebhooks` reference library."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from shared.jsonutil import dumps


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """Headers a Standard Webhooks sender would send for `body`, signed by the reference code."""
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    stamp = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


def call_event(**overrides: Any) -> dict[str, Any]:
    """A realistic generic missed-call event."""
    event: dict[str, Any] = {
        "id": f"evt_{secrets.token_hex(6)}",
        "call_id": f"call-{secrets.token_hex(6)}",
        "from": "040 123 4567",
        "to": "+358 9 4245 1000",
        "status": "no_answer",
        "occurred_at": "2026-11-24T12:00:00Z",
        "queue": "billing",
    }
    event.update(overrides)
    return event


def body_of(event: dict[str, Any]) -> bytes:
    return dumps(event)
