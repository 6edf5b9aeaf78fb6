"""History reads where a callback stands as callback's producer writes it (`CallbackState`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import events
from services.callback.models import Callback, CallbackOutbox
from shared.contracts import CallbackState
from shared.ids import new_id
from shared.vocabulary import CallbackStatus, ClosingOutcome, EventType
from tests.history.conftest import make_event

PHONE = "+358401234567"
CONTACT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _callback(**fields: Any) -> Callback:
    """A callback row as callback holds it (never stored: only its event is)."""
    values: dict[str, Any] = {
        "id": new_id(),
        "phone": PHONE,
        "email": None,
        "name": None,
        "language": "fi",
        "status": CallbackStatus.PENDING,
        "source": "missed_call",
        "channel": "phone",
        "first_contact_at": CONTACT,
        "due_at": CONTACT,
        "sla_deadline": CONTACT + timedelta(hours=2),
        "contact_count": 1,
        "slot_start": None,
        "slot_end": None,
        "flag": None,
        "agent_id": None,
        "attempt_count": 0,
        "outcome": None,
    }
    values.update(fields)
    return Callback(**values)


async def _produced(
    sessions: async_sessionmaker[AsyncSession], callback: Callback, type_: EventType
) -> dict[str, Any]:
    """The event body callback's producer queues for history about `callback`."""
    async with sessions() as session:
        await events.callback_changed(session, callback=callback, type=type_, summary="Changed")
        (row,) = (await session.execute(select(CallbackOutbox.path, CallbackOutbox.payload))).all()
        await session.rollback()
    assert row.path == "/v1/events"
    payload: dict[str, Any] = row.payload
    return payload


async def _profile(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str], body: dict[str, Any]
) -> Any:
    stored = await client.post("/v1/events", json=body, headers=writer)
    assert stored.status_code == 201, stored.text
    customer_id = stored.json()["customer_id"]
    response = await client.get(f"/v1/customers/{customer_id}", headers=reader)
    assert response.status_code == 200, response.text
    return response.json()


def _utc(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        (EventType.CALLBACK_CREATED, {"contact_count": 2, "flag": "no_slot_before_deadline"}),
        (
            EventType.CALLBACK_SCHEDULED,
            {
                "status": CallbackStatus.SCHEDULED,
                "due_at": CONTACT + timedelta(minutes=45),
                "slot_start": CONTACT + timedelta(minutes=45),
                "slot_end": CONTACT + timedelta(minutes=60),
            },
        ),
        (
            EventType.CALLBACK_CLAIMED,
            {"status": CallbackStatus.IN_PROGRESS, "agent_id": "agent-7", "attempt_count": 1},
        ),
    ],
)
async def test_an_open_callback_s_state_round_trips(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    type_: EventType,
    fields: dict[str, Any],
) -> None:
    callback = _callback(**fields)
    state = events.where_it_stands(callback)
    body = await _produced(sessions, callback, type_)
    assert CallbackState.model_validate(body["data"]) == state

    (shown,) = (await _profile(client, writer, reader, body))["open_callbacks"]
    assert shown == {
        "id": callback.id,
        "status": state.status,
        # A state without a queue was written before queues existed: `default` (DESIGN §9).
        "queue": state.queue or "default",
        "due_at": _utc(state.due_at),
        "agent_id": state.agent_id,
        "last_event_type": type_,
        "last_event_at": body["occurred_at"].replace("+00:00", "Z"),
        "sla_deadline": _utc(state.sla_deadline),
        "slot_start": _utc(state.slot_start),
        "slot_end": _utc(state.slot_end),
        "attempts": state.attempts,
        "contact_count": state.contact_count,
        "flag": state.flag,
    }


async def test_a_closed_callback_s_state_round_trips(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    callback = _callback(
        status=CallbackStatus.COMPLETED,
        outcome=ClosingOutcome.REACHED_INBOUND,
        agent_id="agent-3",
        attempt_count=2,
    )
    state = events.where_it_stands(callback)
    body = await _produced(sessions, callback, EventType.CALLBACK_COMPLETED)

    profile = await _profile(client, writer, reader, body)
    assert profile["open_callbacks"] == []
    assert profile["recent_callbacks"] == [
        {
            "id": callback.id,
            "status": "completed",
            "queue": state.queue or "default",
            "outcome": "reached_inbound",
            "agent_id": "agent-3",
            "attempts": 2,
            "closed_at": body["occurred_at"].replace("+00:00", "Z"),
            "last_event_type": "callback_completed",
        }
    ]


def _lifecycle_event(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return make_event(
        type=type_,
        direction="internal",
        subject={"kind": "callback", "id": "cb-1"},
        actor={"kind": "agent", "id": "agent-9"},
        data=data,
    )


@pytest.mark.parametrize(
    ("data", "status"),
    [
        # Stored before callback sent its state: the event type tells.
        ({}, "in_progress"),
        # Not a status of ours: the event type tells, the rest still counts.
        ({"status": "parked", "attempts": 2}, "in_progress"),
        ({"status": None, "attempts": 2}, "in_progress"),
        # An outcome we do not know is left out; the status still decides closed.
        ({"status": "failed", "outcome": "abducted", "attempts": 2}, "failed"),
    ],
)
async def test_a_state_that_does_not_validate_falls_back_to_the_event_type(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    data: dict[str, Any],
    status: str,
) -> None:
    body = _lifecycle_event(EventType.CALLBACK_CLAIMED, data)
    profile = await _profile(client, writer, reader, body)
    callbacks: list[dict[str, Any]] = [*profile["open_callbacks"], *profile["recent_callbacks"]]
    (shown,) = callbacks
    assert shown["status"] == status
    assert shown["agent_id"] == "agent-9"  # a claim by an agent names its agent
    assert shown["attempts"] == data.get("attempts")
    if "outcome" in shown:
        assert shown["outcome"] is None
