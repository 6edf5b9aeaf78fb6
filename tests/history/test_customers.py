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
        "due_at": "2026-11-24T11:00:00Z",
        "agent_id": None,
        "last_event_type": "callback_created",
        "last_event_at": "2026-11-24T09:00:01Z",
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
