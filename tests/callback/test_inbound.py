"""Answered calls, email-only acknowledgements, erasure, do-not-call, dead notifications."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Attempt, Callback, CallbackOutbox, Notification
from services.callback.settings import CallbackSettings
from tests.callback.conftest import (
    ConfirmOwed,
    ReadNotificationsFn,
    ReadOutboxFn,
    RunWorker,
    SmsGateway,
    SmtpServer,
)
from tests.callback.helpers import callback_body


def _answered(request_id: str, phone: str = "0401234567") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "phone": phone,
        "occurred_at": datetime.now(UTC).isoformat(),
        "inbound_id": "in-1",
    }


async def test_an_answered_inbound_call_completes_the_open_callback(
    client: AsyncClient,
    auth: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
    confirm_owed: ConfirmOwed,
    read_outbox: ReadOutboxFn,
    read_notifications: ReadNotificationsFn,
) -> None:
    created = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()

    answer = await client.post(
        "/v1/answered-calls", json=_answered("ans-1", "+358 40 123 4567"), headers=auth
    )
    again = await client.post("/v1/answered-calls", json=_answered("ans-1"), headers=auth)
    nobody = await client.post(
        "/v1/answered-calls", json=_answered("ans-2", "050 765 4321"), headers=auth
    )
    writer = {"Authorization": f"Bearer {await make_key('callbacks:write')}"}
    refused = await client.post("/v1/answered-calls", json=_answered("ans-3"), headers=writer)

    assert answer.status_code == 200
    assert answer.json() == {"status": "completed", "callback_id": created["id"]}
    assert again.json() == answer.json()
    assert nobody.status_code == 200
    assert nobody.json() == {"status": "no_open_callback", "callback_id": None}
    assert refused.status_code == 403
    detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
    assert (detail["status"], detail["outcome"]) == ("completed", "reached_inbound")
    # The confirmation owed is no longer sent: the customer already got through.
    await confirm_owed()
    assert await read_notifications(created["id"]) == []
    completed = [
        r.payload for r in await read_outbox() if r.payload["type"] == "callback_completed"
    ]
    assert len(completed) == 1
    assert completed[0]["data"]["outcome"] == "reached_inbound"
    assert (
        await client.post("/v1/queue/claim", json={"agent_id": "a"}, headers=auth)
    ).status_code == 204


async def test_answered_calls_can_be_left_alone_by_configuration(
    settings: CallbackSettings, clean_db: None, auth: dict[str, str]
) -> None:
    from services.callback.app import create_app
    from tests.conftest import serve_asgi

    off = settings.model_copy(update={"complete_on_inbound_answer": False})
    async for client in serve_asgi(create_app(off)):
        created = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
        answer = await client.post("/v1/answered-calls", json=_answered("ans-off"), headers=auth)
        assert answer.json()["status"] == "disabled"
        detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
        assert detail["status"] == "pending"


async def test_an_email_only_contact_gets_one_acknowledgement_email(
    client: AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    smtp: SmtpServer,
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
) -> None:
    body = {
        "request_id": "ack-1",
        "email": "Kalle.Kayttaja@Example.fi",
        "name": "Kalle Käyttäjä",
        "language": "fi",
        "channel": "email",
        "received_at": datetime.now(UTC).isoformat(),
    }
    first = await client.post("/v1/acknowledgements", json=body, headers=auth)
    again = await client.post("/v1/acknowledgements", json=body, headers=auth)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == first.json()

    await run_worker()

    assert len(smtp.messages) == 1
    message = smtp.messages[0].message()
    assert str(message["To"]) == "kalle.kayttaja@example.fi"
    assert str(message["Subject"]) == "Olemme vastaanottaneet viestisi"
    text = message.get_content()
    assert text.startswith("Hei Kalle Käyttäjä,")
    async with sessions() as session:
        (row,) = (await session.scalars(select(Notification))).all()
    assert (row.callback_id, row.kind, row.status) == (None, "acknowledgement", "sent")
    sent = [r.payload for r in await read_outbox()]
    assert [e["type"] for e in sent] == ["notification_sent"]
    assert sent[0]["customer"] == {"email": "kalle.kayttaja@example.fi"}


async def test_erasure_forgets_the_person_everywhere_in_callback(
    client: AsyncClient,
    auth: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
    confirm_owed: ConfirmOwed,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    created = (
        await client.post(
            "/v1/callbacks", json=callback_body(message="Laskusta kysyttävää"), headers=auth
        )
    ).json()
    other = (
        await client.post(
            "/v1/callbacks",
            json=callback_body(phone="050 111 2222", email="muu@example.fi", name="Muu Henkilö"),
            headers=auth,
        )
    ).json()
    await confirm_owed()
    await client.post("/v1/queue/claim", json={"agent_id": "anna"}, headers=auth)
    claimed = (await client.get("/v1/callbacks", params={"agent_id": "anna"}, headers=auth)).json()
    claimed_id = claimed["items"][0]["id"]
    await client.post(
        f"/v1/callbacks/{claimed_id}/attempts",
        json={"agent_id": "anna", "outcome": "no_answer", "note": "Maija ei vastannut"},
        headers=auth,
    )
    request = {
        "id": "erasure-1",
        "phones": ["+358 40 123 4567"],
        "emails": ["MAIJA.MEIKALAINEN@example.fi"],
        "requested_at": datetime.now(UTC).isoformat(),
    }
    reader = {"Authorization": f"Bearer {await make_key('callbacks:write')}"}
    assert (await client.post("/v1/erasures", json=request, headers=reader)).status_code == 403

    answer = await client.post("/v1/erasures", json=request, headers=auth)
    again = await client.post("/v1/erasures", json=request, headers=auth)

    assert answer.status_code == 200, answer.text
    counts = answer.json()
    assert counts["callbacks"] == 1
    assert counts["cancelled"] == 1
    assert counts["notifications"] >= 2
    assert counts["outbox"] >= 2
    assert again.json() == counts
    async with sessions() as session:
        callback = await session.get(Callback, created["id"])
        assert callback is not None
        assert callback.phone.startswith("#")
        assert (callback.email, callback.name, callback.message) == (None, None, None)
        assert (callback.status, callback.outcome) == ("cancelled", "erased")
        rows = (
            await session.scalars(
                select(Notification).where(Notification.callback_id == created["id"])
            )
        ).all()
        assert {(n.recipient, n.body, n.subject) for n in rows} == {("erased", "", None)}
        notes = (await session.scalars(select(Attempt.note))).all()
        outbox = (await session.scalars(select(CallbackOutbox))).all()
        untouched = await session.get(Callback, other["id"])
    if claimed_id == created["id"]:
        assert notes == [None]
    everything = json.dumps([row.payload for row in outbox], ensure_ascii=False) + " ".join(
        row.ordering_key for row in outbox
    )
    assert "+358401234567" not in everything
    assert "maija" not in everything.lower()
    assert "Muu Henkilö" in everything  # another person's records stay
    assert untouched is not None
    assert untouched.email == "muu@example.fi"


async def test_do_not_call_numbers_get_no_callback_and_no_sms(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    read_outbox: ReadOutboxFn,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    open_one = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    assert (await client.put("/v1/dnc/040 123 4567", headers=auth)).status_code == 403

    put = await client.put("/v1/dnc/040%20123%204567", headers=admin)
    again = await client.put("/v1/dnc/+358401234567", headers=admin)
    assert put.status_code == 201
    assert put.json()["phone"] == "+358401234567"
    assert put.json()["cancelled_callback_id"] == open_one["id"]
    assert again.status_code == 200
    assert (await client.put("/v1/dnc/12", headers=admin)).status_code == 422

    declined = await client.post(
        "/v1/callbacks", json=callback_body(phone="0401234567"), headers=auth
    )
    assert declined.status_code == 202
    assert declined.json()["id"] is None
    assert declined.json()["status"] == "do_not_call"
    assert await confirm_owed() == {}
    async with sessions() as session:
        notifications = (await session.scalars(select(Notification))).all()
        statuses = (await session.scalars(select(Callback.status))).all()
    assert notifications == []
    assert statuses == ["cancelled"]
    types = [r.payload["type"] for r in await read_outbox()]
    assert types[-1] == "x-callback_declined_dnc"

    assert (await client.delete("/v1/dnc/040-123 4567", headers=admin)).status_code == 204
    assert (
        await client.post("/v1/callbacks", json=callback_body(), headers=auth)
    ).status_code == 201


async def test_dead_notifications_are_listed_and_retried(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    run_worker: RunWorker,
    gateway: SmsGateway,
    read_notifications: ReadNotificationsFn,
) -> None:
    created = (
        await client.post("/v1/callbacks", json=callback_body(email=None), headers=auth)
    ).json()
    await confirm_owed()
    gateway.fail_next(400)
    await run_worker()

    dead = await client.get("/v1/notifications", params={"status": "dead"}, headers=admin)
    assert dead.status_code == 200
    (item,) = dead.json()["items"]
    assert (item["callback_id"], item["status"], item["kind"]) == (
        created["id"],
        "dead",
        "confirmation",
    )
    assert "recipient" not in item
    assert (await client.get("/v1/notifications", headers=auth)).status_code == 403

    retried = await client.post(f"/v1/notifications/{item['id']}/retry", headers=admin)
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"
    assert (
        await client.post(f"/v1/notifications/{item['id']}/retry", headers=admin)
    ).status_code == 409
    assert (await client.post("/v1/notifications/nope/retry", headers=admin)).status_code == 404
    await run_worker()

    (row,) = await read_notifications(created["id"])
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(gateway.requests) == 2
