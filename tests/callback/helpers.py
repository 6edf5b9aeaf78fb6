"""Request bodies and small readers shared by callback's tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any


def callback_body(**overrides: Any) -> dict[str, Any]:
    """A `POST /v1/callbacks` body for Maija, who just missed us by phone."""
    body: dict[str, Any] = {
        "request_id": f"missed:{secrets.token_hex(8)}",
        "source": "missed_call",
        "channel": "phone",
        "first_contact_at": datetime.now(UTC).isoformat(),
        "phone": "040 123 4567",
        "email": "Maija.Meikalainen@Example.fi",
        "name": "Maija Meikäläinen",
        "language": "fi",
    }
    body.update(overrides)
    return body
