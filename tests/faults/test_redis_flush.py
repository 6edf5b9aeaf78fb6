"""Redis loses everything (FLUSHDB): the sweeper finds every piece of due work in PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import creation
from services.callback.app import create_app
from services.callback.jobs import ArqNotificationQueue
from services.callback.models import Callback, Notification
from services.callback.settings import CallbackSettings
from services.callback.tasks import OWED_CONFIRMATION_GRACE, state_of, sweep
from services.callback.worker import close_worker, create_worker, worker_settings
from shared.db import commit
from shared.service_app import create_redis
from tests.conftest import serve_asgi
from tests.support.gateways import SmsGateway, SmtpInbox


@pytest.fixture
def settings(
    settings_kwargs: dict[str, Any], gateway: SmsGateway, inbox: SmtpInbox, tmp_path: Path
) -> CallbackSettings:
    return CallbackSettings(
        **settings_kwargs,
        sms_provider="http",
        sms_http_url=f"{gateway.url}/sms",
        email_provider="smtp",
        smtp_host=inbox.host,
        smtp_port=inbox.port,
        smtp_starttls=False,
        sink_dir=tmp_path / "sink",
        outbox_relay=False,
    )


@pytest.fixture
async def api(settings: CallbackSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for client in serve_asgi(create_app(settings)):
        yield client


def _body(i: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "request_id": f"flush-{i}",
        "source": "missed_call",
        "channel": "phone",
        "first_contact_at": datetime.now(UTC).isoformat(),
        "phone": f"+3584060{i:05d}",
        "email": f"asiakas{i}@example.fi",
        "language": "sv",
    }
    body.update(overrides)
    return body


async def _queued(settings: CallbackSettings) -> int:
    client = aioredis.Redis.from_url(settings.require_redis_url())
    try:
        return int(await client.zcard(settings.queue_name))
    finally:
        await client.aclose()


@pytest.mark.timeout(60)
async def test_after_flushdb_the_sweeper_recovers_every_due_job(
    api: AsyncClient,
    internal_key: str,
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    gateway: SmsGateway,
    inbox: SmtpInbox,
) -> None:
    auth = {"Authorization": f"Bearer {internal_key}"}
    # 1. Five callbacks whose booking-and-confirmation job is queued, not yet run.
    for i in range(5):
        assert (await api.post("/v1/callbacks", json=_body(i), headers=auth)).status_code == 201
    # 2. Five more whose confirmations are rendered rows with their send jobs queued.
    for i in range(5, 10):
        assert (await api.post("/v1/callbacks", json=_body(i), headers=auth)).status_code == 201
    redis = create_redis(settings)
    queue = ArqNotificationQueue(redis)
    async with sessions() as session:
        rendered = (
            await session.scalars(
                select(Callback.id).where(
                    Callback.phone.in_([_body(i)["phone"] for i in range(5, 10)])
                )
            )
        ).all()
    for callback_id in rendered:
        async with sessions() as session:
            await creation.book_and_confirm(
                session=session, settings=settings, callback_id=callback_id, queue=queue
            )
            await commit(session)
    await redis.aclose(close_connection_pool=True)
    assert await _queued(settings) == 10 + 5 * 2  # ten booking jobs, ten sends

    # Redis is flushed (a failover to an empty replica, an operator's mistake).
    flush = aioredis.Redis.from_url(settings.require_redis_url())
    await flush.flushdb()
    await flush.aclose()
    assert await _queued(settings) == 0
    # Time passes: the owed confirmations are older than the grace the sweeper allows.
    async with sessions() as session:
        await session.execute(
            update(Callback).values(
                updated_at=datetime.now(UTC) - OWED_CONFIRMATION_GRACE - timedelta(seconds=1)
            )
        )
        await session.commit()

    ctx: dict[str, Any] = {}
    await worker_settings(settings)["on_startup"](ctx)
    pool = create_redis(settings)
    try:
        assert await sweep(state_of(ctx), pool) == 5 + 5 * 2
        assert await sweep(state_of(ctx), pool) == 0  # already queued: the same job ids
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)
        await pool.aclose(close_connection_pool=True)

    worker = create_worker(settings, burst=True, poll_delay=0, handle_signals=False)
    try:
        await worker.main()
    finally:
        await close_worker(worker)

    async with sessions() as session:
        rows = (await session.scalars(select(Notification))).all()
        owed = (
            await session.scalars(select(Callback.id).where(Callback.confirm_key.is_not(None)))
        ).all()
    assert owed == []
    assert len(rows) == 20
    assert {r.status for r in rows} == {"sent"}
    sms_per_number = Counter(r.json()["to"] for r in gateway.requests)
    assert sms_per_number == {_body(i)["phone"]: 1 for i in range(10)}
    assert sorted(str(m["To"]) for m in inbox.messages) == sorted(
        f"asiakas{i}@example.fi" for i in range(10)
    )
    # Swedish, with its letters intact through a real SMTP server.
    assert all(
        str(m["Subject"]) == "Din begäran om återuppringning har tagits emot"
        for m in inbox.messages
    )
