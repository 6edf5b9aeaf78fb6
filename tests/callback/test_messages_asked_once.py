"""Issue #21: the messages a change owes ask their questions together.

A booking owes a confirmation and a reminder; each asked whether it was written already,
whether the number is on the do-not-call list, and how many messages the number had today
(the ceiling's count): four round trips, two of them repeats. Asked once for all, they are
two, and the ceiling must decide exactly as it does one message at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import ceilings, notify, repository
from services.callback.models import Callback, Notification, NotificationKind, Refusal
from services.callback.settings import CallbackSettings
from shared.ids import new_id
from shared.vocabulary import NotificationChannel
from tests.callback.conftest import InsertCallbacks

SMS = NotificationChannel.SMS
EMAIL = NotificationChannel.EMAIL
HELSINKI = ZoneInfo("Europe/Helsinki")
PHONE = "+358401230001"
ADDRESS = "maija@example.fi"


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


async def _sent_before(
    sessions: async_sessionmaker[AsyncSession], callback_id: str, count: int, now: datetime
) -> None:
    """`count` messages to the number today (and some that do not count: cancelled, old,
    another channel), as earlier changes would have left them."""
    rows = [("queued", now - timedelta(hours=1), SMS, PHONE) for _ in range(count)] + [
        ("cancelled", now - timedelta(hours=1), SMS, PHONE),
        ("sent", now - timedelta(days=2), SMS, PHONE),
        ("sent", now - timedelta(hours=1), EMAIL, ADDRESS),
    ]
    async with sessions() as session:
        for i, (status, created, channel, recipient) in enumerate(rows):
            session.add(
                Notification(
                    id=new_id(),
                    callback_id=callback_id,
                    kind="confirmation",
                    event_key=f"earlier:{i}",
                    channel=channel,
                    provider="test",
                    status=status,
                    recipient=recipient,
                    body="Hei",
                    attempts=0,
                    max_attempts=3,
                    next_attempt_at=created,
                    created_at=created,
                    updated_at=created,
                )
            )
        await session.commit()


def _messages(settings: CallbackSettings, callback: Callback, now: datetime) -> list[Any]:
    return [
        notify.confirmation(
            settings, callback, event_key=f"{key}:{callback.id}", now=now, zone=HELSINKI
        )
        for key in ("first", "second")
    ]


class _NoQueue:
    async def enqueue_notifications(self, notification_ids: Any) -> int:
        return 0

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool:
        return False

    async def enqueue_booking(self, callback_id: str) -> bool:
        return False


@pytest.mark.parametrize("earlier", [0, 2, 3, 4])
async def test_two_messages_cost_two_questions_and_the_ceiling_counts_the_first(
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
    earlier: int,
) -> None:
    ceiling = 4
    limited = settings.model_copy(
        update={"sms_per_number_per_day": ceiling, "email_per_address_per_day": 100}
    )
    now = datetime.now(UTC)
    (callback_id,) = await insert_callbacks(1, phone=PHONE, email=ADDRESS)
    await _sent_before(sessions, callback_id, earlier, now)

    async with sessions() as session:
        callback = await session.get(Callback, callback_id)
        assert callback is not None
        with _statements() as sent:
            rows = await notify.send(
                session,
                _NoQueue(),
                settings=limited,
                callback=callback,
                messages=_messages(limited, callback, now),
                now=now,
            )
        await session.commit()

    # Both messages by email; by SMS as many as the day has room for, in order.
    room = max(0, ceiling - earlier)
    by_sms = [row.event_key for row in rows if row.channel == SMS]
    assert by_sms == [f"{key}:{callback_id}" for key in ("first", "second")][:room]
    assert len([row for row in rows if row.channel == EMAIL]) == 2
    async with sessions() as session:
        refused = await session.scalar(select(func.count()).select_from(Refusal))
    assert refused == 2 - min(room, 2)
    # Two questions, then every row in one write.
    questions = [s for s in sent if s.lstrip().startswith("SELECT")]
    writes = [s for s in sent if s.lstrip().startswith("INSERT INTO callback.notifications")]
    assert (len(questions), len(writes), len(sent)) == (2, 1, 3), sent


@pytest.mark.parametrize("earlier", [0, 3, 4, 5])
async def test_a_count_asked_ahead_decides_as_the_ceiling_counting_itself(
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
    earlier: int,
) -> None:
    """The same rule both ways: `message_allowed` counting, and given `count_sent_today`'s
    figure, with a row of this transaction not yet flushed, around the ceiling."""
    limited = settings.model_copy(update={"sms_per_number_per_day": 5})
    now = datetime.now(UTC)
    (callback_id,) = await insert_callbacks(1, phone=PHONE)
    await _sent_before(sessions, callback_id, earlier, now)
    decisions = []
    for ask_ahead in (False, True):
        async with sessions() as session:
            session.add(
                Notification(
                    id=new_id(),
                    callback_id=callback_id,
                    kind="reminder",
                    event_key="unflushed",
                    channel=SMS,
                    provider="test",
                    status="queued",
                    recipient=PHONE,
                    body="Hei",
                    attempts=0,
                    max_attempts=3,
                    next_attempt_at=now,
                )
            )
            await repository.lock(session, *ceilings.recipient_lock(SMS, PHONE))
            counted = (
                (await ceilings.count_sent_today(session, [(SMS, PHONE)], now=now))[(SMS, PHONE)]
                if ask_ahead
                else None
            )
            decisions.append(
                await ceilings.message_allowed(
                    session,
                    limited,
                    channel=SMS,
                    recipient=PHONE,
                    kind=NotificationKind.CONFIRMATION,
                    callback_id=callback_id,
                    now=now,
                    counted=counted,
                )
            )
            await session.rollback()

    assert decisions[0] == decisions[1] == (earlier + 1 < 5)
