"""The customer profile: who they are and where their case stands."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.history.conftest import make_event

PHONE = {"phone": "040 123 4567"}


async def _post(client: AsyncClient, writer: dict[str, str], **fields: Any) -> Any:
    response = await client.post("/v1/events", json=make_event(**fields), headers=writer)
    assert response.status_code == 201, response.text
    return response.json()


def _callback_event(type_: str, callback_id: str, at: str, **data: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "occurred_at": at,
        "direction": "internal",
        "customer": PHONE,
        "subject": {"kind": "callback", "id": callback_id},
        "actor": {"kind": "system"},
        "data": data,
    }


async def _profile(client: AsyncClient, reader: dict[str, str], customer_id: str) -> Any:
    response = await client.get(f"/v1/customers/{customer_id}", headers=reader)
    assert response.status_code == 200, response.text
    return response.json()


async def test_profile_lists_identities_and_counts(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    first = await _post(
        client,
        writer,
        occurred_at="2026-11-24T09:00:00Z",
        customer={**PHONE, "name": "Maija Meikäläinen", "language": "fi"},
    )
    await _post(client, writer, occurred_at="2026-11-24T10:00:00Z", customer=PHONE)
    await _post(
        client,
        writer,
        occurred_at="2026-11-24T11:00:00Z",
        channel="sms",
        direction="outbound",
        type="notification_sent",
        customer={**PHONE, "email": "maija@example.fi"},
    )
    # Internal bookkeeping counts but is not a contact with the customer.
    await _post(
        client,
        writer,
        occurred_at="2026-11-24T12:00:00Z",
        direction="internal",
        type="note",
        customer=PHONE,
    )
    profile = await _profile(client, reader, first["customer_id"])
    assert profile["id"] == first["customer_id"]
    assert profile["name"] == "Maija Meikäläinen"
    assert profile["language"] == "fi"
    assert profile["phones"] == ["+358401234567"]
    assert profile["emails"] == ["maija@example.fi"]
    assert profile["counts"] == {"missed_call": 2, "note": 1, "notification_sent": 1}
    assert profile["last_contact"] == {
        "phone": "2026-11-24T10:00:00Z",
        "sms": "2026-11-24T11:00:00Z",
    }
    assert profile["open_callbacks"] == []


async def test_open_callbacks_follow_the_callback_events(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    missed = await _post(client, writer, occurred_at="2026-11-24T09:00:00Z", customer=PHONE)
    customer_id = missed["customer_id"]
    await _post(
        client,
        writer,
        **_callback_event(
            "callback_created",
            "cb-1",
            "2026-11-24T09:00:01Z",
            status="pending",
            due_at="2026-11-24T11:00:00+00:00",
        ),
    )
    (open_cb,) = (await _profile(client, reader, customer_id))["open_callbacks"]
    assert open_cb == {
        "id": "cb-1",
        "status": "pending",
        "queue": "default",
        "due_at": "2026-11-24T11:00:00Z",
        "agent_id": None,
        "last_event_type": "callback_created",
        "last_event_at": "2026-11-24T09:00:01Z",
        "sla_deadline": None,
        "slot_start": None,
        "slot_end": None,
        "attempts": None,
        "contact_count": None,
        "flag": None,
    }

    await _post(
        client,
        writer,
        **{
            **_callback_event(
                "callback_claimed", "cb-1", "2026-11-24T10:00:00Z", status="in_progress"
            ),
            "actor": {"kind": "agent", "id": "agent-7"},
        },
    )
    (claimed,) = (await _profile(client, reader, customer_id))["open_callbacks"]
    assert claimed["status"] == "in_progress"
    assert claimed["agent_id"] == "agent-7"

    # A second callback, then the first is completed: only the second stays open.
    await _post(
        client,
        writer,
        **_callback_event("callback_scheduled", "cb-2", "2026-11-24T10:05:00Z", agent_id="agent-3"),
    )
    await _post(
        client,
        writer,
        **_callback_event("callback_completed", "cb-1", "2026-11-24T10:10:00Z"),
    )
    (still_open,) = (await _profile(client, reader, customer_id))["open_callbacks"]
    assert still_open["id"] == "cb-2"
    assert still_open["status"] == "scheduled"
    assert still_open["agent_id"] == "agent-3"

    # A late-arriving older event does not reopen a closed callback.
    await _post(
        client,
        writer,
        **_callback_event("callback_scheduled", "cb-1", "2026-11-24T09:30:00Z"),
    )
    await _post(
        client, writer, **_callback_event("callback_cancelled", "cb-2", "2026-11-24T10:20:00Z")
    )
    assert (await _profile(client, reader, customer_id))["open_callbacks"] == []


async def test_reader_may_not_see_without_scope(
    client: AsyncClient, writer: dict[str, str]
) -> None:
    stored = await _post(client, writer)
    # Writing is not reading.
    response = await client.get(f"/v1/customers/{stored['customer_id']}", headers=writer)
    assert response.status_code == 403


def _where_it_stands(status: str, **fields: Any) -> dict[str, Any]:
    """The `data` callback sends on every lifecycle event (services/callback/events.py)."""
    return {
        "status": status,
        "due_at": "2026-11-24T12:00:00+02:00",
        "sla_deadline": "2026-11-24T14:00:00+02:00",
        "agent_id": None,
        "slot_start": None,
        "slot_end": None,
        "contact_count": 1,
        "attempts": 0,
        "outcome": None,
        "flag": None,
        **fields,
    }


async def test_where_it_stands_reads_the_callback_services_data(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    missed = await _post(client, writer, occurred_at="2026-11-24T09:00:00Z", customer=PHONE)
    customer_id = missed["customer_id"]
    lifecycle = [
        ("callback_created", "09:00:01", _where_it_stands("pending")),
        (
            "callback_scheduled",
            "09:01:00",
            _where_it_stands(
                "scheduled",
                slot_start="2026-11-24T10:30:00+00:00",
                slot_end="2026-11-24T10:45:00+00:00",
            ),
        ),
        ("callback_claimed", "10:30:00", _where_it_stands("in_progress", agent_id="agent-7")),
        # An unanswered try puts it back in the queue, due later, with one attempt made.
        (
            "callback_attempted",
            "10:32:00",
            _where_it_stands(
                "pending", attempts=1, due_at="2026-11-24T10:47:00+00:00", flag="retry"
            ),
        ),
    ]
    for type_, at, data in lifecycle:
        await _post(client, writer, **_callback_event(type_, "cb-9", f"2026-11-24T{at}Z", **data))
    profile = await _profile(client, reader, customer_id)
    (open_cb,) = profile["open_callbacks"]
    assert open_cb["status"] == "pending"
    assert open_cb["due_at"] == "2026-11-24T10:47:00Z"
    assert open_cb["sla_deadline"] == "2026-11-24T12:00:00Z"
    assert open_cb["attempts"] == 1
    assert open_cb["flag"] == "retry"
    assert open_cb["agent_id"] is None
    assert open_cb["last_event_type"] == "callback_attempted"
    assert profile["recent_callbacks"] == []

    # Claimed again and reached: closed, with its outcome and agent.
    await _post(
        client,
        writer,
        **_callback_event(
            "callback_claimed",
            "cb-9",
            "2026-11-24T10:47:00Z",
            **_where_it_stands("in_progress", agent_id="agent-3", attempts=1),
        ),
    )
    (claimed,) = (await _profile(client, reader, customer_id))["open_callbacks"]
    assert (claimed["status"], claimed["agent_id"]) == ("in_progress", "agent-3")
    await _post(
        client,
        writer,
        **_callback_event(
            "callback_completed",
            "cb-9",
            "2026-11-24T10:50:00Z",
            **_where_it_stands("completed", agent_id="agent-3", attempts=2, outcome="reached"),
        ),
    )
    profile = await _profile(client, reader, customer_id)
    assert profile["open_callbacks"] == []
    assert profile["recent_callbacks"] == [
        {
            "id": "cb-9",
            "status": "completed",
            # Its events name no queue (sent before queues existed): `default`.
            "queue": "default",
            "outcome": "reached",
            "agent_id": "agent-3",
            "attempts": 2,
            "closed_at": "2026-11-24T10:50:00Z",
            "last_event_type": "callback_completed",
        }
    ]


async def test_data_status_decides_open_or_closed(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    missed = await _post(client, writer, occurred_at="2026-11-24T09:00:00Z", customer=PHONE)
    # The last try was unanswered: callback says so with an attempted event whose status is
    # `failed` (attempts exhausted), before or instead of a separate `callback_failed`.
    await _post(
        client,
        writer,
        **_callback_event(
            "callback_attempted",
            "cb-1",
            "2026-11-24T11:00:00Z",
            **_where_it_stands("failed", attempts=3, outcome="no_answer"),
        ),
    )
    profile = await _profile(client, reader, missed["customer_id"])
    assert profile["open_callbacks"] == []
    assert [(c["id"], c["status"], c["outcome"]) for c in profile["recent_callbacks"]] == [
        ("cb-1", "failed", "no_answer")
    ]
