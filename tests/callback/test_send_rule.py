"""The worker's one-statement claim and its careful path decide alike, for every kind of row."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.callback import repository
from services.callback.models import Notification, NotificationKind, SlotBooking
from services.callback.send_rule import STARTABLE, Decision, decide, waits_on_callback
from services.callback.tasks import take
from shared.ids import new_id
from shared.vocabulary import CallbackStatus, NotificationChannel, NotificationStatus
from tests.callback.conftest import InsertCallbacks


async def test_the_claim_statement_and_the_careful_path_agree(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    due_by = now + timedelta(seconds=2)
    slot_start = now + timedelta(days=1)
    async with sessions() as session:
        session.add(
            SlotBooking(
                slot_start=slot_start,
                slot_end=slot_start + timedelta(minutes=15),
                capacity=5,
                booked=1,
            )
        )
        await session.commit()
    (booked,) = await insert_callbacks(
        1,
        status=CallbackStatus.SCHEDULED,
        slot_start=slot_start,
        slot_end=slot_start + timedelta(minutes=15),
    )
    (waiting,) = await insert_callbacks(1, phone="+358401999999")
    callbacks = {booked: CallbackStatus.SCHEDULED, waiting: CallbackStatus.PENDING, None: None}

    cases = list(
        itertools.product(
            NotificationStatus,
            (NotificationKind.REMINDER, NotificationKind.CONFIRMATION),
            callbacks,
            # Overdue, due within the early tolerance, and not due for an hour.
            (now - timedelta(minutes=1), now + timedelta(seconds=1), now + timedelta(hours=1)),
            (0, 3),
        )
    )
    rows = [
        Notification(
            id=new_id(),
            callback_id=callback_id,
            kind=kind,
            event_key=f"case:{i}",
            channel=NotificationChannel.SMS,
            provider="file",
            status=status,
            recipient="+358401000000",
            body="text",
            attempts=attempts,
            max_attempts=3,
            next_attempt_at=next_attempt_at,
        )
        for i, (status, kind, callback_id, next_attempt_at, attempts) in enumerate(cases)
    ]
    async with sessions() as session:
        session.add_all(rows)
        await session.commit()

    expected = {
        row.id: decide(
            row,
            callback_status=callbacks[row.callback_id]
            if waits_on_callback(row, due_by=due_by)
            else None,
            now=now,
            due_by=due_by,
        )
        == Decision.SEND
        and row.status in STARTABLE
        for row in rows
    }
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        # The whole grid in one statement, as a busy worker claims its jobs' sends together.
        taken = await repository.claim_due_notifications(
            conn,
            [row.id for row in rows],
            now=now,
            due_by=due_by,
            lease_until=now + timedelta(minutes=1),
            sms_provider="http",
            email_provider="smtp",
        )
    claimed = {row.id: row.id in taken for row in rows}

    disagreements = [
        (row.status, row.kind, callbacks[row.callback_id], row.next_attempt_at - now, row.attempts)
        for row in rows
        if claimed[row.id] != expected[row.id]
    ]
    assert not disagreements
    # The grid reaches both answers, and the reminder rule both ways.
    assert any(claimed.values())
    assert not all(claimed.values())
    reminder_cases = {
        (callbacks[row.callback_id], claimed[row.id])
        for row in rows
        if row.kind == NotificationKind.REMINDER
        and row.status == NotificationStatus.QUEUED
        and row.next_attempt_at <= due_by
        and row.attempts == 0
    }
    assert reminder_cases == {
        (CallbackStatus.SCHEDULED, True),
        (CallbackStatus.PENDING, False),
        (None, False),
    }


async def test_a_claim_writes_the_same_in_sql_and_in_python(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    # The worker claims a written row in SQL (`claim_due_notification`); the booking job
    # claims the rows it sends itself in Python (`tasks.take`) before writing them.
    now = datetime.now(UTC).replace(microsecond=0)
    lease_until = now + timedelta(minutes=1)
    (callback_id,) = await insert_callbacks(1)

    def fresh(channel: NotificationChannel) -> Notification:
        return Notification(
            id=new_id(),
            callback_id=callback_id,
            kind=NotificationKind.CONFIRMATION,
            event_key=f"confirmation:{new_id()}",
            channel=channel,
            provider="file",
            status=NotificationStatus.QUEUED,
            recipient="+358401000000",
            body="text",
            attempts=0,
            max_attempts=3,
            next_attempt_at=now - timedelta(seconds=1),
            created_at=now,
            updated_at=now - timedelta(minutes=5),
        )

    pairs = [(fresh(c), fresh(c)) for c in (NotificationChannel.SMS, NotificationChannel.EMAIL)]
    async with sessions() as session:
        session.add_all([in_sql for in_sql, _ in pairs])
        await session.commit()
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        for in_sql, _ in pairs:
            claimed = await repository.claim_due_notifications(
                conn,
                [in_sql.id],
                now=now,
                due_by=now,
                lease_until=lease_until,
                sms_provider="http",
                email_provider="smtp",
            )
            assert in_sql.id in claimed
    for _, in_python in pairs:
        provider = "http" if in_python.channel == NotificationChannel.SMS else "smtp"
        take(in_python, None, provider=provider, now=now, lease_until=lease_until)
    async with sessions() as session:
        await repository.add_notifications(session, [in_python for _, in_python in pairs])
        await session.commit()

    def written(row: Notification) -> tuple[object, ...]:
        return (row.status, row.attempts, row.provider, row.next_attempt_at, row.updated_at)

    async with sessions() as session:
        for in_sql, in_python in pairs:
            a = await session.get(Notification, in_sql.id)
            b = await session.get(Notification, in_python.id)
            assert a is not None
            assert b is not None
            assert written(a) == written(b)
            assert written(a)[:3] == ("sending", 1, "http" if a.channel == "sms" else "smtp")
