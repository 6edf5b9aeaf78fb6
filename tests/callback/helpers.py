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


ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def plan_body(
    *,
    hours: tuple[str, str] = ("00:00", "24:00"),
    days: tuple[str, ...] = ALL_DAYS,
    agents: int = 1,
    per_agent: int = 1,
    **overrides: Any,
) -> dict[str, Any]:
    """A capacity plan: the same hours and staffing on each of `days`."""
    body: dict[str, Any] = {
        "timezone": "Europe/Helsinki",
        "slot_minutes": 15,
        "callbacks_per_agent_per_slot": per_agent,
        "business_hours": {day: [{"start": hours[0], "end": hours[1]}] for day in days},
        "default_agents": agents,
    }
    body.update(overrides)
    return body
