"""Issue #21: the booking job claims the sends it makes itself as it writes their rows.

Its confirmations are written `sending`, leased to the job, in the booking's transaction, and
sent after the commit with no claim statement of their own. A job that dies after its commit
leaves them to the sweeper once the lease runs out, as a send that dies mid-call does: sent
once, with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import creation
from services.callback.jobs import ArqNotificationQueue
from services.callback.models import Notification
from services.callback.settings import CallbackSettings
from services.callback.tasks import _SendHere, state_of, sweep
from services.callback.worker import worker_settings
from shared.db import commit
from shared.service_app import create_redis
from tests.callback.conftest import ReadNotificationsFn, RunWorker, SmsGateway, SmtpServer
from tests.callback.helpers import callback_body

# The statement that claims one notification's send (`repository._CLAIM_DUE`).
CLAIM = "WITH claimed AS (UPDATE callback.notifications"


@contextmanager
def _statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def hook(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", hook)


async def _create(client: AsyncClient, auth: dict[str, str]) -> str:
    response = await client.post("/v1/callbacks", json=callback_body(), headers=auth)
    assert response.status_code == 201, response.text
    callback_id: str = response.json()["id"]
    return callback_id


async def test_the_booking_job_sends_its_confirmations_without_claiming_them_again(
    client: AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    gateway: SmsGateway,
    smtp: SmtpServer,
    read_notifications: ReadNotificationsFn,
) -> None:
    callback_id = await _create(client, auth)

    with _statements() as sent:
        await run_worker()

    assert len(gateway.requests) == 1
    assert len(smtp.messages) == 1
    rows = await read_notifications(callback_id)
    assert [(r.channel, r.status, r.attempts, r.provider) for r in rows] == [
        ("sms", "sent", 1, "http"),
        ("email", "sent", 1, "smtp"),
    ]
    assert gateway.requests[0].headers["idempotency-key"] == rows[0].id
    assert not [s for s in sent if s.lstrip().startswith(CLAIM)]


async def test_sends_claimed_by_a_booking_job_that_died_go_out_once_when_the_lease_ends(
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    gateway: SmsGateway,
    smtp: SmtpServer,
    read_notifications: ReadNotificationsFn,
) -> None:
    callback_id = await _create(client, auth)
    redis = create_redis(settings)
    ctx: dict[str, Any] = {"redis": redis}
    await worker_settings(settings)["on_startup"](ctx)
    state = state_of(ctx)
    try:
        # The booking job's transaction commits; its process dies before the sends.
        queue = _SendHere(state, ArqNotificationQueue(redis, queue_name=settings.queue_name))
        async with sessions() as session:
            result = await creation.book_and_confirm(
                session=session,
                settings=settings,
                callback_id=callback_id,
                queue=queue,
                take_now=queue.take_now,
            )
            await commit(session)
        assert result == "no slot"  # no capacity plan here: confirmed "as soon as possible"
        rows = await read_notifications(callback_id)
        assert [(r.status, r.attempts) for r in rows] == [("sending", 1), ("sending", 1)]
        assert all(r.next_attempt_at > datetime.now(UTC) for r in rows)

        # Within the lease the sweeper leaves them alone: the job may still be sending.
        await sweep(state, redis)
        await run_worker()
        assert (len(gateway.requests), len(smtp.messages)) == (0, 0)

        # The lease has run out, as time would have it.
        async with sessions() as session:
            await session.execute(
                update(Notification)
                .where(Notification.callback_id == callback_id)
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()
        await sweep(state, redis)
        await run_worker()
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)
        await redis.aclose(close_connection_pool=True)

    assert (len(gateway.requests), len(smtp.messages)) == (1, 1)
    rows = await read_notifications(callback_id)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 2), ("sent", 2)]
    assert gateway.requests[0].headers["idempotency-key"] == rows[0].id
