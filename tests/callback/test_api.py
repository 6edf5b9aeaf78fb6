"""`POST/GET /v1/callbacks`: create, idempotency, the merge rule, races and problem answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback, CallbackOutbox, Notification
from services.callback.settings import CallbackSettings
from tests.callback.conftest import ConfirmOwed
from tests.callback.helpers import callback_body

ReadNotifications = Callable[..., Awaitable[list[Notification]]]
ReadOutbox = Callable[[], Awaitable[list[CallbackOutbox]]]


async def _queued_job_ids(settings: CallbackSettings) -> set[str]:
    client = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        return {m.decode() for m in await client.zrange(settings.queue_name, 0, -1)}
    finally:
        await client.aclose()


async def test_create_answers_201_and_queues_both_confirmations(
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
    confirm_owed: ConfirmOwed,
) -> None:
    first_contact = datetime.now(UTC) - timedelta(minutes=5)
    response = await client.post(
        "/v1/callbacks",
        json=callback_body(first_contact_at=first_contact.isoformat()),
        headers=auth,
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "pending"
    assert created["merged"] is False
    assert created["contact_count"] == 1
    sla_deadline = datetime.fromisoformat(created["sla_deadline"])
    assert sla_deadline == first_contact + timedelta(minutes=settings.sla_minutes)

    # The confirmation is owed: one booking job (it books ASAP first, then confirms).
    assert await _queued_job_ids(settings) == {f"book:{created['id']}"}
    assert await read_notifications(created["id"]) == []
    assert await confirm_owed() == {created["id"]: "no slot"}

    detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
    assert detail["phone"] == "+358401234567"
    assert detail["email"] == "maija.meikalainen@example.fi"
    # No capacity plan: no slot before the deadline, so it waits, flagged.
    assert (detail["status"], detail["flag"]) == ("pending", "no_slot_before_deadline")
    assert {(n["channel"], n["status"], n["kind"]) for n in detail["notifications"]} == {
        ("sms", "queued", "confirmation"),
        ("email", "queued", "confirmation"),
    }

    # One job per notification, deduplicated by id, carrying ids only.
    rows = await read_notifications(created["id"])
    assert await _queued_job_ids(settings) == {f"book:{created['id']}"} | {
        f"notify:{n.id}" for n in rows
    }
    raw_jobs = await _raw_jobs(settings)
    assert all(b"+358" not in job and b"@" not in job for job in raw_jobs)

    events = [row.payload for row in await read_outbox()]
    assert [e["type"] for e in events] == ["callback_created"]
    event = events[0]
    assert event["subject"] == {"kind": "callback", "id": created["id"]}
    assert event["customer"]["phone"] == "+358401234567"
    assert event["data"]["contact_count"] == 1
    assert event["data"]["status"] == "pending"


async def _raw_jobs(settings: CallbackSettings) -> list[bytes]:
    client = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        keys = await client.keys("arq:job:*")
        return [await client.get(k) or b"" for k in keys]
    finally:
        await client.aclose()


async def test_confirmation_texts_are_rendered_into_the_rows(
    client: AsyncClient,
    auth: dict[str, str],
    read_notifications: ReadNotifications,
    confirm_owed: ConfirmOwed,
) -> None:
    response = await client.post("/v1/callbacks", json=callback_body(), headers=auth)
    await confirm_owed()
    sms, email = await read_notifications(response.json()["id"])

    assert sms.recipient == "+358401234567"
    assert sms.body.startswith("Hei Maija! Saimme soittopyyntösi.")
    assert "mahdollisimman pian" in sms.body
    assert "https://asiointi.example.fi/v1/self/" in sms.body
    assert len(sms.body) <= 300
    assert email.recipient == "maija.meikalainen@example.fi"
    assert email.subject == "Soittopyyntösi on vastaanotettu"
    assert "numeroon +358401234567" in email.body


async def test_repeated_request_id_returns_the_first_answer_and_does_nothing(
    client: AsyncClient,
    auth: dict[str, str],
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
    confirm_owed: ConfirmOwed,
) -> None:
    body = callback_body()
    first = await client.post("/v1/callbacks", json=body, headers=auth)
    await confirm_owed()
    again = await client.post("/v1/callbacks", json=body, headers=auth)
    assert await confirm_owed() == {}

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(await read_notifications()) == 2
    assert len(await read_outbox()) == 1
    detail = (await client.get(f"/v1/callbacks/{first.json()['id']}", headers=auth)).json()
    assert detail["contact_count"] == 1


async def test_same_number_in_another_notation_merges_without_second_confirmation(
    client: AsyncClient,
    auth: dict[str, str],
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
    confirm_owed: ConfirmOwed,
) -> None:
    early = datetime.now(UTC) - timedelta(minutes=30)
    first = await client.post(
        "/v1/callbacks", json=callback_body(first_contact_at=early.isoformat()), headers=auth
    )
    second = await client.post(
        "/v1/callbacks",
        json=callback_body(
            phone="+358 40 1234567", source="contact_request", channel="web", email=None
        ),
        headers=auth,
    )
    await confirm_owed()

    assert second.status_code == 200
    merged = second.json()
    assert merged["id"] == first.json()["id"]
    assert merged["merged"] is True
    assert merged["contact_count"] == 2
    # The SLA clock started at the first contact and was not reset by the second.
    assert merged["sla_deadline"] == first.json()["sla_deadline"]
    assert len(await read_notifications()) == 2
    assert [row.payload["type"] for row in await read_outbox()] == [
        "callback_created",
        "callback_merged",
    ]


async def test_merge_after_the_cooldown_confirms_again(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotifications,
    confirm_owed: ConfirmOwed,
) -> None:
    first = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    await confirm_owed()
    async with sessions() as session:
        await session.execute(
            update(Callback)
            .where(Callback.id == first["id"])
            .values(last_confirmation_at=datetime.now(UTC) - timedelta(minutes=61))
        )
        await session.commit()

    again = await client.post("/v1/callbacks", json=callback_body(), headers=auth)
    await confirm_owed()

    assert again.json()["merged"] is True
    rows = await read_notifications(first["id"])
    assert len(rows) == 4
    assert len({row.event_key for row in rows}) == 2


async def test_twenty_concurrent_creates_for_one_new_number_make_one_callback(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotifications,
    confirm_owed: ConfirmOwed,
) -> None:
    notations = ["040 123 4567", "+358401234567", "0401234567", "040/1234567", "00358401234567"]
    responses = await asyncio.gather(
        *(
            client.post("/v1/callbacks", json=callback_body(phone=notations[i % 5]), headers=auth)
            for i in range(20)
        )
    )

    await confirm_owed()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    async with sessions() as session:
        callbacks = (await session.scalars(select(Callback))).all()
    assert len(callbacks) == 1
    assert callbacks[0].contact_count == 20
    assert len(await read_notifications()) == 2


async def test_sms_only_to_allowed_regions_and_with_consent(
    client: AsyncClient,
    auth: dict[str, str],
    read_notifications: ReadNotifications,
    confirm_owed: ConfirmOwed,
) -> None:
    us = await client.post(
        "/v1/callbacks", json=callback_body(phone="+1 650 253 0000"), headers=auth
    )
    no_consent = await client.post(
        "/v1/callbacks",
        json=callback_body(phone="+46 70 123 45 67", consent={"sms": False, "email": True}),
        headers=auth,
    )
    no_email = await client.post(
        "/v1/callbacks", json=callback_body(phone="+372 5123 4567", email=None), headers=auth
    )
    await confirm_owed()

    assert [n.channel for n in await read_notifications(us.json()["id"])] == ["email"]
    assert [n.channel for n in await read_notifications(no_consent.json()["id"])] == ["email"]
    assert [n.channel for n in await read_notifications(no_email.json()["id"])] == ["sms"]


async def test_get_and_list(
    client: AsyncClient, auth: dict[str, str], make_key: Callable[..., Awaitable[str]]
) -> None:
    ids = []
    for phone in ("040 111 1111", "040 222 2222", "040 333 3333"):
        response = await client.post("/v1/callbacks", json=callback_body(phone=phone), headers=auth)
        ids.append(response.json()["id"])
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}

    page1 = (await client.get("/v1/callbacks?limit=2", headers=reader)).json()
    page2 = (
        await client.get(f"/v1/callbacks?limit=2&cursor={page1['next_cursor']}", headers=reader)
    ).json()
    by_phone = (await client.get("/v1/callbacks?phone=0402222222", headers=reader)).json()
    done = (await client.get("/v1/callbacks?status=completed", headers=reader)).json()
    past = (
        await client.get("/v1/callbacks?due_before=2020-01-01T00:00:00Z", headers=reader)
    ).json()
    due = (
        await client.get(
            "/v1/callbacks",
            params={"due_before": _in_a_minute(), "status": "pending"},
            headers=reader,
        )
    ).json()

    assert [c["id"] for c in page1["items"]] == [ids[2], ids[1]]
    assert [c["id"] for c in page2["items"]] == [ids[0]]
    assert page2["next_cursor"] is None
    assert [c["id"] for c in by_phone["items"]] == [ids[1]]
    assert done == {"items": [], "next_cursor": None}
    assert past["items"] == []
    assert len(due["items"]) == 3


def _in_a_minute() -> str:
    return (datetime.now(UTC) + timedelta(minutes=1)).isoformat()


async def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "traceback" not in response.text.lower()
    return body


async def test_problems(
    client: AsyncClient, auth: dict[str, str], make_key: Callable[..., Awaitable[str]]
) -> None:
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}

    await _problem(await client.post("/v1/callbacks", json=callback_body()), 401)
    await _problem(
        await client.post(
            "/v1/callbacks", json=callback_body(), headers={"Authorization": "Bearer rb_nope"}
        ),
        401,
    )
    await _problem(await client.post("/v1/callbacks", json=callback_body(), headers=reader), 403)
    await _problem(
        await client.post(
            "/v1/callbacks",
            content=b"phone=0401234567",
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
    )
    await _problem(
        await client.post(
            "/v1/callbacks",
            content=b"{not json",
            headers={**auth, "Content-Type": "application/json"},
        ),
        400,
    )
    missing = await _problem(
        await client.post("/v1/callbacks", json={"phone": "0401234567"}, headers=auth), 422
    )
    assert ["body", "request_id"] in [e["loc"] for e in missing["errors"]]
    bad_phone = await _problem(
        await client.post("/v1/callbacks", json=callback_body(phone="12"), headers=auth), 422
    )
    assert bad_phone["errors"] == [{"loc": ["body", "phone"], "msg": "not a valid phone number"}]
    await _problem(await client.get("/v1/callbacks/no-such-callback", headers=reader), 404)
    await _problem(await client.get("/v1/callbacks?status=lost", headers=reader), 422)
    await _problem(await client.get("/v1/callbacks?limit=501", headers=reader), 422)
    await _problem(await client.get("/v1/callbacks?cursor=%%%", headers=reader), 400)
    await _problem(await client.get("/v1/callbacks?phone=abc", headers=reader), 422)


async def test_nothing_is_written_when_the_request_is_refused(
    client: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    await client.post("/v1/callbacks", json=callback_body(phone="12"), headers=auth)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Callback)) == 0
