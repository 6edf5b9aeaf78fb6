"""A busy worker claims its jobs' sends, and marks them sent, together: each send still once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import repository
from services.callback.models import CallbackOutbox, Notification
from services.callback.senders.base import SendResult
from services.callback.settings import CallbackSettings
from services.callback.tasks import _claim, _claim_batch, _record, deliver, state_of
from services.callback.worker import worker_settings
from tests.callback.conftest import ConfirmOwed, SmsGateway
from tests.callback.helpers import callback_body

ReadNotifications = Callable[..., Awaitable[list[Notification]]]
ReadOutbox = Callable[[], Awaitable[list[CallbackOutbox]]]


@pytest.fixture
async def sms_rows(
    client: AsyncClient,
    auth: dict[str, str],
    confirm_owed: ConfirmOwed,
    read_notifications: ReadNotifications,
) -> list[Notification]:
    """Eight customers' confirmation SMS, queued and due (the callbacks created by the API)."""
    for i in range(8):
        body = callback_body(phone=f"040 123 45{i:02d}", email=None)
        response = await client.post("/v1/callbacks", json=body, headers=auth)
        assert response.status_code == 201, response.text
    await confirm_owed()
    rows = await read_notifications()
    assert [(row.channel, row.status) for row in rows] == [("sms", "queued")] * 8
    return rows


@pytest.fixture
async def worker_ctx(settings: CallbackSettings) -> Any:
    ctx: dict[str, Any] = {}
    await worker_settings(settings)["on_startup"](ctx)
    yield ctx
    await worker_settings(settings)["on_shutdown"](ctx)


def _sent_events(outbox: Sequence[CallbackOutbox]) -> list[str]:
    return sorted(
        row.payload["data"]["notification_id"]
        for row in outbox
        if row.payload["type"] == "notification_sent"
    )


async def test_concurrent_jobs_send_each_once_with_fewer_statements_than_sends(
    sms_rows: list[Notification],
    worker_ctx: dict[str, Any],
    gateway: SmsGateway,
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims: list[int] = []
    marks: list[int] = []
    claim, mark = repository.claim_due_notifications, repository.mark_notifications_sent

    async def counted_claim(conn: Any, ids: Sequence[str], **kwargs: Any) -> Any:
        claims.append(len(ids))
        return await claim(conn, ids, **kwargs)

    async def counted_mark(db: Any, results: Sequence[Any], **kwargs: Any) -> Any:
        marks.append(len(results))
        return await mark(db, results, **kwargs)

    monkeypatch.setattr(repository, "claim_due_notifications", counted_claim)
    monkeypatch.setattr(repository, "mark_notifications_sent", counted_mark)
    state = state_of(worker_ctx)

    # Eight jobs at once, as the worker runs them: every SMS reaches the gateway once.
    ids = [row.id for row in sms_rows]
    outcomes = await asyncio.gather(*(deliver(state, i) for i in ids))

    assert outcomes == ["sent"] * 8
    assert sorted(r.headers["idempotency-key"] for r in gateway.requests) == sorted(ids)
    rows = await read_notifications()
    assert {(row.status, row.attempts) for row in rows} == {("sent", 1)}
    assert _sent_events(await read_outbox()) == sorted(ids)
    # Eight claims and eight results, in fewer statements: the ones that arrived while a
    # statement ran went together in the next.
    assert sum(claims) == 8
    assert len(claims) < 8
    assert sum(marks) == 8
    assert len(marks) < 8

    # The same jobs again (arq delivers at least once): nothing is sent twice.
    assert await asyncio.gather(*(deliver(state, i) for i in ids)) == ["already sent"] * 8
    assert len(gateway.requests) == 8


async def test_a_batch_marks_only_the_sends_it_still_holds(
    sms_rows: list[Notification],
    worker_ctx: dict[str, Any],
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotifications,
    read_outbox: ReadOutbox,
) -> None:
    state = state_of(worker_ctx)
    held, lost = sms_rows[:2]
    claims = [await _claim(state, row.id) for row in (held, lost)]
    assert not any(isinstance(claim, str) for claim in claims)
    # One lease ran out mid-send and another job took that send over (attempt 2).
    async with sessions() as session:
        await session.execute(
            update(Notification).where(Notification.id == lost.id).values(attempts=2)
        )
        await session.commit()
    events_before = _sent_events(await read_outbox())

    results = await asyncio.gather(
        *(
            _record(state, claim, SendResult(provider="http", message_id=f"gw-{n}"))  # type: ignore[arg-type]
            for n, claim in enumerate(claims)
        )
    )

    assert results == ["sent", "superseded"]
    by_id = {row.id: row for row in await read_notifications()}
    assert (by_id[held.id].status, by_id[held.id].provider_message_id) == ("sent", "gw-0")
    assert (by_id[lost.id].status, by_id[lost.id].provider_message_id) == ("sending", None)
    # The event of the send that still held its row, and none for the other.
    assert _sent_events(await read_outbox()) == sorted([*events_before, held.id])


async def test_one_send_asked_twice_in_a_batch_is_held_by_one_job(
    sms_rows: list[Notification], worker_ctx: dict[str, Any]
) -> None:
    state = state_of(worker_ctx)
    row = sms_rows[0]
    first, second = await _claim_batch(state, [row.id, row.id])
    assert first is not None
    assert first["attempts"] == 1
    assert second is None
