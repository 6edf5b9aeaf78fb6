"""The satisfaction survey going out (§13): after a final `reached`, only when it may."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Notification, Survey
from services.callback.settings import CallbackSettings
from tests.callback.conftest import (
    InsertCallbacks,
    ReadNotificationsFn,
    ReadOutboxFn,
    RunWorker,
    SmsGateway,
)
from tests.callback.helpers import claim, put_queue

SURVEY_FROM = "+358401110000"
PHONE = "+358401234567"
# Start equal to end: this queue has no quiet hours, so the tests do not depend on the hour.
NO_QUIET = {"start": "00:00", "end": "00:00"}


@pytest.fixture
def settings(settings: CallbackSettings) -> CallbackSettings:
    return settings.model_copy(update={"survey_from": SURVEY_FROM})


async def survey_queue(
    client: AsyncClient, admin: dict[str, str], key: str = "support", **fields: Any
) -> None:
    config: dict[str, Any] = {
        "survey": {"enabled": True, "delay_minutes": 10},
        "sms_quiet_hours": NO_QUIET,
        **fields,
    }
    await put_queue(client, admin, key, **config)


async def reach(
    client: AsyncClient, auth: dict[str, str], callback_id: str, outcome: str = "reached"
) -> None:
    claimed = await claim(client, auth, "anna")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["id"] == callback_id
    answer = await client.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": "anna", "outcome": outcome},
        headers=auth,
    )
    assert answer.status_code == 201, answer.text


async def surveys(sessions: async_sessionmaker[AsyncSession]) -> list[Survey]:
    async with sessions() as session:
        return list((await session.scalars(select(Survey).order_by(Survey.created_at))).all())


async def make_due(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Time passes: every queued message is due now (the test cannot wait ten minutes)."""
    async with sessions() as session:
        await session.execute(
            update(Notification)
            .where(Notification.status == "queued")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()


def survey_messages(rows: list[Notification]) -> list[Notification]:
    return [n for n in rows if n.kind == "survey"]


async def test_a_reached_callback_gets_one_survey_sms_after_the_delay(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    read_outbox: ReadOutboxFn,
    run_worker: RunWorker,
    gateway: SmsGateway,
) -> None:
    await survey_queue(client, admin)
    (callback_id,) = await insert_callbacks(1, phone=PHONE, queue="support", name="Maija Virtanen")
    before = datetime.now(UTC)
    await reach(client, auth, callback_id)

    (message,) = survey_messages(await read_notifications(callback_id))
    assert (message.channel, message.recipient, message.status) == ("sms", PHONE, "queued")
    # Ten minutes after the reach, not before.
    assert before + timedelta(minutes=10) <= message.next_attempt_at
    assert message.next_attempt_at <= datetime.now(UTC) + timedelta(minutes=10)
    assert "Hei Maija!" in message.body
    assert "1\u20135" in message.body
    await run_worker()
    assert gateway.requests == []

    await make_due(sessions)
    await run_worker()

    (sent,) = gateway.requests
    assert sent.json()["sender"] == SURVEY_FROM
    assert sent.json()["to"] == PHONE
    assert "Kuinka hyvin onnistuimme auttamaan?" in sent.json()["text"]
    (survey,) = await surveys(sessions)
    assert (survey.status, survey.channel, survey.agent_id) == ("sent", "sms", "anna")
    (event,) = [r.payload for r in await read_outbox() if r.payload["type"] == "survey_sent"]
    assert (event["channel"], event["direction"]) == ("sms", "outbound")
    assert event["subject"] == {"kind": "callback", "id": callback_id}
    assert event["data"] == {"queue": "support", "agent_id": "anna", "survey_id": survey.id}


async def test_a_customer_we_may_not_text_gets_the_survey_by_email_with_the_page_link(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    read_outbox: ReadOutboxFn,
    run_worker: RunWorker,
    smtp: Any,
) -> None:
    await survey_queue(client, admin)
    (callback_id,) = await insert_callbacks(
        1, phone=PHONE, queue="support", consent_sms=False, email="maija@example.fi", language="sv"
    )
    await reach(client, auth, callback_id)
    await make_due(sessions)
    await run_worker()

    (message,) = survey_messages(await read_notifications(callback_id))
    assert (message.channel, message.status) == ("email", "sent")
    assert message.subject == "Hur väl kunde vi hjälpa dig?"
    assert "https://asiointi.example.fi/v1/self/" in message.body
    (mail,) = smtp.messages
    assert mail.rcpt_tos == ["maija@example.fi"]
    (event,) = [r.payload for r in await read_outbox() if r.payload["type"] == "survey_sent"]
    assert event["channel"] == "email"


@pytest.mark.parametrize(
    ("why", "queue_fields", "callback_fields", "outcome"),
    [
        ("the queue has no survey", {"survey": {"enabled": False}}, {}, "reached"),
        ("not reached", {}, {}, "wrong_number"),
        ("no SMS consent and no email", {}, {"consent_sms": False, "email": None}, "reached"),
        ("no consent at all", {}, {"consent_sms": False, "consent_email": False}, "reached"),
    ],
)
async def test_no_survey_unless_every_condition_holds(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    why: str,
    queue_fields: dict[str, Any],
    callback_fields: dict[str, Any],
    outcome: str,
) -> None:
    await survey_queue(client, admin, **queue_fields)
    fields = {"email": "maija@example.fi", **callback_fields}
    (callback_id,) = await insert_callbacks(1, phone=PHONE, queue="support", **fields)
    await reach(client, auth, callback_id, outcome)

    assert survey_messages(await read_notifications(callback_id)) == [], why
    assert await surveys(sessions) == [], why


async def test_a_number_put_on_the_do_not_call_list_meanwhile_gets_no_survey(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    run_worker: RunWorker,
    gateway: SmsGateway,
) -> None:
    await survey_queue(client, admin)
    (callback_id,) = await insert_callbacks(1, phone=PHONE, queue="support")
    await reach(client, auth, callback_id)
    # Within the delay, the customer asks never to be contacted again.
    assert (await client.put(f"/v1/dnc/{PHONE}", headers=admin)).status_code in (200, 201, 204)
    await make_due(sessions)
    await run_worker()

    assert gateway.requests == []
    (message,) = survey_messages(await read_notifications(callback_id))
    assert message.status == "cancelled"
    assert [s.status for s in await surveys(sessions)] == ["withdrawn"]


async def test_one_survey_per_customer_in_30_days(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
) -> None:
    await survey_queue(client, admin)
    await survey_queue(client, admin, "sales")
    (first,) = await insert_callbacks(1, phone=PHONE, queue="support")
    await reach(client, auth, first)
    (second,) = await insert_callbacks(1, phone=PHONE, queue="sales")
    await reach(client, auth, second)

    assert [s.callback_id for s in await surveys(sessions)] == [first]
    assert survey_messages(await read_notifications(second)) == []

    # 31 days on, the customer may be asked again.
    async with sessions() as session:
        await session.execute(
            update(Survey).values(created_at=datetime.now(UTC) - timedelta(days=31))
        )
        await session.commit()
    (third,) = await insert_callbacks(1, phone=PHONE, queue="support")
    await reach(client, auth, third)
    assert [s.callback_id for s in await surveys(sessions)] == [first, third]


async def test_without_a_survey_number_an_sms_customer_gets_it_by_email(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    read_notifications: ReadNotificationsFn,
    settings: CallbackSettings,
) -> None:
    # The fixture's app has the number; this checks the rule itself through a second app.
    from services.callback.app import create_app
    from tests.conftest import serve_asgi

    await survey_queue(client, admin)
    (callback_id,) = await insert_callbacks(1, phone=PHONE, queue="support", email="m@example.fi")
    no_number = settings.model_copy(update={"survey_from": None})
    async for other in serve_asgi(create_app(no_number)):
        await reach(other, auth, callback_id)

    (message,) = survey_messages(await read_notifications(callback_id))
    assert message.channel == "email"


def test_an_alphanumeric_survey_sender_is_refused_at_startup(
    settings_kwargs: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="alphanumeric sender cannot receive replies"):
        CallbackSettings(**settings_kwargs, survey_from="Palvelu")
    assert CallbackSettings(**settings_kwargs, survey_from=SURVEY_FROM).survey_from == SURVEY_FROM
