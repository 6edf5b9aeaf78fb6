"""The worker delivers confirmations through a real gateway and a real SMTP server, once."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq import Retry
from arq.connections import ArqRedis
from httpx import AsyncClient
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import CallbackOutbox, Notification
from services.callback.senders.base import SendResult
from services.callback.settings import CallbackSettings
from services.callback.tasks import _claim, _record, deliver, state_of, sweep
from services.callback.worker import worker_settings
from shared.service_app import create_redis
from tests.callback.conftest import ConfirmOwed, RunWorker, SmsGateway, SmtpServer
from tests.callback.helpers import callback_body

ReadNotifications = Callable[..., Awaitable[list[Notification]]]
ReadOutbox = Callable[[], Awaitable[list[CallbackOutbox]]]


Create = Callable[..., Awaitable[str]]


@pytest.fixture
def create(client: AsyncClient, auth: dict[str, str], confirm_owed: ConfirmOwed) -> Create:
    """POST a callback and run its `book_and_confirm` job, so its confirmations are rows."""

    async def run(**overrides: Any) -> str:
        response = await client.post("/v1/callbacks", json=callback_body(**overrides), headers=auth)
        assert response.status_code == 201, response.text
        callback_id: str = response.json()["id"]
        await confirm_owed()
        return callback_id

    return run


async def test_worker_sends_one_sms_and_one_email(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    gateway: SmsGateway,
    smtp: SmtpServer,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    callback_id = await create()
    sms_row, email_row = await read_notifications(callback_id)

    await run_worker()

    # The gateway got exactly one request, shaped as DESIGN §8 says.
    assert len(gateway.requests) == 1
    request = gateway.requests[0]
    assert request.path == "/sms"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == sms_row.id
    assert request.json() == {
        "to": "+358401234567",
        "text": sms_row.body,
        "reference": sms_row.id,
        "sender": "Palvelu",
    }
    # The SMTP server got exactly one message, in Finnish, UTF-8 intact.
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail.rcpt_tos == ["maija.meikalainen@example.fi"]
    message = mail.message()
    assert parseaddr(str(message["From"])) == ("Asiakaspalvelu", "palvelu@example.fi")
    assert str(message["To"]) == "maija.meikalainen@example.fi"
    assert str(message["Subject"]) == "Soittopyyntösi on vastaanotettu"
    assert str(message["Message-ID"]) == f"<notification.{email_row.id}@example.fi>"
    text = message.get_content().replace("\r\n", "\n")
    assert text.startswith("Hei Maija Meikäläinen,\n\nkiitos yhteydenotostasi.")
    assert "tänään viimeistään klo" in text or "viimeistään huomenna" in text
    assert "https://asiointi.example.fi/v1/self/" in text

    sms_row, email_row = await read_notifications(callback_id)
    assert (sms_row.status, sms_row.attempts, sms_row.provider) == ("sent", 1, "http")
    assert sms_row.provider_message_id == "gw-1"
    assert (email_row.status, email_row.attempts, email_row.provider) == ("sent", 1, "smtp")
    assert sms_row.sent_at is not None

    events = [row.payload for row in await read_outbox()]
    assert sorted(e["type"] for e in events) == [
        "callback_created",
        "notification_sent",
        "notification_sent",
    ]
    sent = [e for e in events if e["type"] == "notification_sent"]
    assert sorted(e["channel"] for e in sent) == ["email", "sms"]
    for event in sent:
        assert event["direction"] == "outbound"
        assert event["subject"] == {"kind": "callback", "id": callback_id}
        assert event["data"]["kind"] == "confirmation"
        assert event["data"]["notification_id"] in {sms_row.id, email_row.id}
        assert sms_row.body not in str(event)


async def test_redelivered_job_sends_nothing_twice(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    run_worker: RunWorker,
    gateway: SmsGateway,
    smtp: SmtpServer,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    callback_id = await create()
    await run_worker()
    rows = await read_notifications(callback_id)

    # arq delivers at least once: the same jobs come again, through Redis and directly.
    pool = _pool(settings)
    for row in rows:
        assert await pool.enqueue_job("send_notification", row.id, _job_id=f"notify:{row.id}")
    await pool.aclose(close_connection_pool=True)
    await run_worker()
    ctx = await _worker_ctx(settings)
    try:
        assert await deliver(state_of(ctx), rows[0].id) == "already sent"
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)

    assert len(gateway.requests) == 1
    assert len(smtp.messages) == 1
    assert [n.attempts for n in await read_notifications(callback_id)] == [1, 1]
    assert len(await read_outbox()) == 3


async def test_gateway_500_is_retried_until_it_recovers(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    run_worker: RunWorker,
    gateway: SmsGateway,
    read_notifications: ReadNotifications,
) -> None:
    callback_id = await create(email=None)
    (row,) = await read_notifications(callback_id)
    gateway.fail_next(500)

    # The first try meets the 500: the row is `failed`, due again after a backoff.
    ctx = await _worker_ctx(settings)
    try:
        with pytest.raises(Retry):
            await deliver(state_of(ctx), row.id)
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)
    (row,) = await read_notifications(callback_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("HTTP 500")
    assert row.next_attempt_at > datetime.now(UTC) - timedelta(seconds=1)

    # The gateway is back: the next run sends it, with the same idempotency key.
    gateway.fail_next(503)
    await run_worker()

    (row,) = await read_notifications(callback_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert [r.headers["idempotency-key"] for r in gateway.requests] == [row.id] * 3


async def test_gateway_400_is_dead_at_once_and_recorded(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    gateway: SmsGateway,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    callback_id = await create(email=None)
    gateway.fail_next(400)

    await run_worker()

    (row,) = await read_notifications(callback_id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert len(gateway.requests) == 1
    failed = [r.payload for r in await read_outbox() if r.payload["type"] == "notification_failed"]
    assert len(failed) == 1
    assert failed[0]["data"]["notification_id"] == row.id
    assert failed[0]["channel"] == "sms"


async def test_transient_failures_end_dead_after_the_last_try(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    gateway: SmsGateway,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    limited = settings.model_copy(update={"notification_max_tries": 3})
    callback_id = await create(email=None)
    async with sessions() as session:
        await session.execute(update(Notification).values(max_attempts=3))
        await session.commit()
    gateway.fail_next(429, times=10)

    await run_worker(limited)

    (row,) = await read_notifications(callback_id)
    assert (row.status, row.attempts) == ("dead", 3)
    assert len(gateway.requests) == 3
    types = [r.payload["type"] for r in await read_outbox()]
    assert types.count("notification_failed") == 1


async def test_smtp_permanent_refusal_is_dead(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    smtp: SmtpServer,
    read_notifications: ReadNotifications,
) -> None:
    callback_id = await create(consent={"sms": False, "email": True})
    smtp.reply = "554 Transaction failed"

    await run_worker()

    (row,) = await read_notifications(callback_id)
    assert (row.channel, row.status, row.attempts) == ("email", "dead", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("SMTP 554")


async def test_a_send_interrupted_by_a_dead_worker_is_resent_with_the_same_key(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    gateway: SmsGateway,
    read_notifications: ReadNotifications,
) -> None:
    callback_id = await create(email=None)
    (row,) = await read_notifications(callback_id)
    # A worker marked it `sending`, called the gateway and was killed before recording.
    async with sessions() as session:
        await session.execute(
            update(Notification)
            .where(Notification.id == row.id)
            .values(
                status="sending",
                attempts=1,
                next_attempt_at=datetime.now(UTC) + timedelta(minutes=2),
            )
        )
        await session.commit()
    ctx = await _worker_ctx(settings)
    try:
        # While its lease runs, nobody else sends it.
        with pytest.raises(Retry):
            await deliver(state_of(ctx), row.id)
        assert gateway.requests == []
        async with sessions() as session:
            await session.execute(
                update(Notification)
                .where(Notification.id == row.id)
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()
        # Once the lease has run out, it is sent again under the same key.
        assert await deliver(state_of(ctx), row.id) == "sent"
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)

    assert [r.headers["idempotency-key"] for r in gateway.requests] == [row.id]
    (row,) = await read_notifications(callback_id)
    assert (row.status, row.attempts) == ("sent", 2)


async def test_a_send_whose_lease_was_taken_over_records_nothing(
    create: Create,
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    callback_id = await create(email=None)
    (row,) = await read_notifications(callback_id)
    events_before = len(await read_outbox())
    ctx = await _worker_ctx(settings)
    state = state_of(ctx)
    try:
        claim = await _claim(state, row.id)
        assert not isinstance(claim, str)
        assert claim.attempt == 1
        # Our lease ran out mid-send and another job took the send over (attempt 2).
        async with sessions() as session:
            await session.execute(
                update(Notification).where(Notification.id == row.id).values(attempts=2)
            )
            await session.commit()
        sent = SendResult(provider="http", message_id="gw-1")
        assert await _record(state, claim, sent) == "superseded"
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)
    (row,) = await read_notifications(callback_id)
    assert (row.status, row.attempts, row.provider_message_id) == ("sending", 2, None)
    assert len(await read_outbox()) == events_before


async def test_the_sent_event_names_the_callback_and_its_customer(
    create: Create,
    run_worker: RunWorker,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    callback_id = await create(email=None, name="Maija Meikäläinen")
    await run_worker()
    (row,) = await read_notifications(callback_id)
    assert row.status == "sent"
    (event,) = [r for r in await read_outbox() if r.payload["type"] == "notification_sent"]
    assert event.ordering_key == row.recipient
    assert event.payload["subject"] == {"kind": "callback", "id": callback_id}
    assert event.payload["customer"]["phone"] == row.recipient
    assert event.payload["customer"]["name"] == "Maija Meikäläinen"
    assert event.payload["data"] == {
        "notification_id": row.id,
        "kind": "confirmation",
        "channel": "sms",
        "attempts": 1,
    }
    assert (event.attempts, event.delivered_at, event.dead_at) == (0, None, None)


async def test_sweeper_requeues_what_a_redis_flush_lost(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    gateway: SmsGateway,
    smtp: SmtpServer,
    run_worker: RunWorker,
    read_notifications: ReadNotifications,
) -> None:
    callback_id = await create()
    redis = aioredis.Redis.from_url(settings.require_redis_url())
    await redis.flushdb()
    await redis.aclose()

    pool = _pool(settings)
    ctx = await _worker_ctx(settings)
    try:
        assert await sweep(state_of(ctx), pool) == 2
        assert await sweep(state_of(ctx), pool) == 0  # already queued: same job ids
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)
        await pool.aclose(close_connection_pool=True)
    await run_worker()

    assert [n.status for n in await read_notifications(callback_id)] == ["sent", "sent"]
    assert len(gateway.requests) == 1
    assert len(smtp.messages) == 1


async def test_swedish_and_english_confirmations(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    gateway: SmsGateway,
    smtp: SmtpServer,
) -> None:
    await create(language="sv", phone="+46 70 123 45 67", name="Åsa Öberg")
    await create(language="en", phone="+372 5123 4567", name="Mari", email="m@e.ee")

    await run_worker()

    texts = {r.json()["to"]: r.json()["text"] for r in gateway.requests}
    assert texts["+46701234567"].startswith("Hej Åsa! Vi har tagit emot din begäran.")
    assert "så snart som möjligt" in texts["+46701234567"]
    assert texts["+37251234567"].startswith("Hi Mari! We got your callback request.")
    assert "as soon as possible" in texts["+37251234567"]
    subjects = {m.rcpt_tos[0]: m.message() for m in smtp.messages}
    sv = subjects["maija.meikalainen@example.fi"]
    assert str(sv["Subject"]) == "Din begäran om återuppringning har tagits emot"
    assert "tack för att du kontaktade oss" in sv.get_content()
    assert str(subjects["m@e.ee"]["Subject"]) == "We received your callback request"


async def test_twilio_compatible_provider(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    run_worker: RunWorker,
    gateway: SmsGateway,
    read_notifications: ReadNotifications,
) -> None:
    twilio = settings.model_copy(
        update={
            "sms_provider": "twilio",
            "sms_twilio_base_url": gateway.url,
            "sms_twilio_account_sid": "AC0123456789",
            "sms_twilio_auth_token": SecretStr("twilio-token"),
            "sms_twilio_from": "+358500000000",
        }
    )
    callback_id = await create(email=None)

    await run_worker(twilio)

    (request,) = gateway.requests
    assert request.path == "/2010-04-01/Accounts/AC0123456789/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected = base64.b64encode(b"AC0123456789:twilio-token").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    (row,) = await read_notifications(callback_id)
    assert request.form() == {"To": "+358401234567", "From": "+358500000000", "Body": row.body}
    assert (row.status, row.provider) == ("sent", "twilio")
    assert row.provider_message_id == "SM" + "1".zfill(32)


async def test_file_sink_writes_readable_messages(
    create: Create,
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    run_worker: RunWorker,
    read_notifications: ReadNotifications,
) -> None:
    files = settings.model_copy(update={"sms_provider": "file", "email_provider": "file"})
    callback_id = await create()

    await run_worker(files)

    sms_row, email_row = await read_notifications(callback_id)
    sms_file = settings.sink_dir / "sms" / f"{sms_row.id}.txt"
    eml_file = settings.sink_dir / "email" / f"{email_row.id}.eml"
    sms_text = sms_file.read_text("utf-8")
    assert sms_text.startswith("To: +358401234567\n")
    assert sms_row.body in sms_text
    eml = eml_file.read_bytes()
    assert b"To: maija.meikalainen@example.fi" in eml
    assert (sms_row.status, email_row.status) == ("sent", "sent")
    assert (sms_row.provider, email_row.provider) == ("file", "file")


# ----------------------------------------------------------------------------- helpers


def _pool(settings: CallbackSettings) -> ArqRedis:
    return create_redis(settings)


async def _worker_ctx(settings: CallbackSettings) -> dict[str, Any]:
    """The context the worker's jobs get, built by the worker's own startup hook."""
    ctx: dict[str, Any] = {}
    await worker_settings(settings)["on_startup"](ctx)
    return ctx
