"""Request bodies and small readers shared by callback's tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback


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


def queue_body(name: str = "Laskutus", **fields: Any) -> dict[str, Any]:
    """A `PUT /v1/queues/{key}` body: the name, and whatever else the test sets."""
    return {"name": name, **fields}


async def put_queue(
    client: AsyncClient, admin: dict[str, str], key: str, **fields: Any
) -> dict[str, Any]:
    """Create or replace queue `key` as an admin would; the queue as answered."""
    response = await client.put(f"/v1/queues/{key}", json=queue_body(**fields), headers=admin)
    assert response.status_code in (200, 201), response.text
    queue: dict[str, Any] = response.json()
    return queue


async def put_agent(
    client: AsyncClient,
    admin: dict[str, str],
    agent_id: str,
    *,
    queues: list[str],
    languages: list[str] | None = None,
    presence: str = "available",
) -> dict[str, Any]:
    """Put an agent on the roster and set their presence (a new agent starts offline)."""
    body = {"name": agent_id.capitalize(), "queues": queues, "languages": languages or []}
    response = await client.put(f"/v1/agents/{agent_id}", json=body, headers=admin)
    assert response.status_code in (200, 201), response.text
    response = await client.put(
        f"/v1/agents/{agent_id}/presence", json={"status": presence}, headers=admin
    )
    assert response.status_code == 200, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def claim(client: AsyncClient, auth: dict[str, str], agent_id: str) -> Response:
    return await client.post("/v1/queue/claim", json={"agent_id": agent_id}, headers=auth)


def is_problem(response: Response, status: int) -> bool:
    """Whether `response` is an RFC 9457 problem with this status."""
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["status"] == status
    )


async def set_callback(
    sessions: async_sessionmaker[AsyncSession], callback_id: str, **values: Any
) -> None:
    """Change a stored callback as time would have: the test cannot wait for `due_at`."""
    async with sessions() as session:
        await session.execute(update(Callback).where(Callback.id == callback_id).values(**values))
        await session.commit()
