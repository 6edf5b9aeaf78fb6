"""A hot statement run on asyncpg directly (`shared.fast_sql`) is the statement SQLAlchemy runs:
the same rows from the same parameters, in the session's transaction, with SQLAlchemy's errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, String, bindparam, func, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import repository
from services.callback.models import CallbackOutbox, DoNotCall, SlotBooking
from services.history import repository as history_repository
from services.history import webhook_delivery, webhook_events
from shared import fast_sql
from shared.db import unit_of_work
from shared.outbox import (
    _add_rows_statement,
    claim_statement,
    row_values,
    rows_params,
    write_back_statement,
)

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
PHONE = "+358401234567"
# Outbox rows the seed writes, two ids from here; the write-back case changes both.
SEEDED_OUTBOX_ID = 9001
_WRITTEN = ("id", "attempts", "last_error", "available_at", "delivered_at", "dead_at", "payload")


def _outbox_row(count: int = 1) -> dict[str, Any]:
    return rows_params(
        CallbackOutbox,
        [
            row_values(
                destination="history",
                path="/v1/events",
                payload={"type": "callback_created", "note": "ääkköset", "none": None},
                ordering_key=PHONE,
                now=NOW,
            )
        ]
        * count,
    )


# Every statement the services run through `fast_sql`, with parameters that make it answer
# something: a read that finds rows, a write that writes.
CASES: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "advisory locks": lambda: (repository._locks(2), {"key0": 11, "key1": 12}),
    "keys used, do-not-call, locks": lambda: (
        repository._keys_used_and_do_not_call(2, 1),
        {"key0": "k-1", "key1": "k-2", "phone": PHONE, "lock0": 13},
    ),
    "messages to each": lambda: (
        repository._messages_to_each(2),
        {
            "since": NOW - timedelta(days=1),
            "channel0": "sms",
            "recipient0": PHONE,
            "channel1": "email",
            "recipient1": "maija@example.fi",
        },
    ),
    "a seat taken": lambda: (
        repository._TAKE_SEAT,
        {
            "b_queue": "default",
            "b_start": NOW,
            "b_end": NOW + timedelta(minutes=15),
            "b_capacity": 2,
        },
    ),
    "a seat left": lambda: (
        repository._SEAT_LEFT,
        {"b_queue": "default", "b_start": NOW, "b_capacity": 2},
    ),
    "seats booked in slots": lambda: (
        repository._BOOKED_COUNTS,
        {"queue": "default", "starts": [NOW, NOW + timedelta(minutes=15)]},
    ),
    "a queue chosen, with the number's open callback": lambda: (
        repository._choose_queue_statement(True, True, False),
        {"named": "nope", "dialed": "+358923000000", "fallback": "default", "phone": PHONE},
    ),
    "a queue chosen, with the open callback, the stored answer and the list": lambda: (
        repository._choose_queue_statement(True, True, True),
        {
            "named": "nope",
            "dialed": "+358923000000",
            "fallback": "default",
            "phone": PHONE,
            "request_id": "r-1",
        },
    ),
    "a due send claimed": lambda: (
        repository._CLAIM_DUE,
        {
            "notification_ids": ["n-1", "n-2"],
            "due_by": NOW,
            "lease_until": NOW + timedelta(minutes=2),
            "now": NOW,
            "sms_provider": "http",
            "email_provider": "smtp",
        },
    ),
    "outbox rows with their wake-up": lambda: (_add_rows_statement(CallbackOutbox), _outbox_row()),
    "outbox rows claimed for a pass": lambda: (
        claim_statement(CallbackOutbox),
        {"claim_limit": 10},
    ),
    "a pass's rows written back": lambda: (
        # RETURNING, only so that both ways have something to compare.
        write_back_statement(CallbackOutbox).returning(
            *(CallbackOutbox.__table__.c[name] for name in _WRITTEN)
        ),
        {
            "written_ids": [SEEDED_OUTBOX_ID, SEEDED_OUTBOX_ID + 1],
            "written_attempts": [1, 2],
            "written_errors": [None, "HTTP 503: busy"],
            "written_available_at": [NOW, NOW + timedelta(seconds=4)],
            "written_delivered_at": [NOW, None],
            "written_dead_at": [None, None],
            "written_payloads": ['{"erased": true}', None],
        },
    ),
    "sent, and its event": lambda: (
        repository._MARK_SENT_AND_TELL,
        {
            "sent_ids": ["n-1", "n-2"],
            "sent_attempts": [1, 2],
            "sent_message_ids": ["m-1", None],
            "now": NOW,
            **_outbox_row(2),
        },
    ),
    "webhook deliveries done": lambda: (
        webhook_delivery._DELIVERED,
        {"delivery_ids": [1, 2], "status_codes": [200, 204], "now": NOW},
    ),
    "webhook deliveries claimed": lambda: (
        webhook_delivery._claim(),
        {
            "per_endpoint": 4,
            "room": 10,
            "busy_endpoints": ["we-full"],
            "busy_counts": [4],
            "now": NOW,
            "until": NOW + timedelta(seconds=30),
        },
    ),
    "history's key locks": lambda: (
        history_repository._LOCK_KEYS,
        {"ns": 1, "keys": ["phone:+358401234567", "email:maija@example.fi"]},
    ),
    "history's identities": lambda: (
        history_repository._IDENTITIES,
        {"kinds": ["email", "phone"], "values": [PHONE, "maija@example.fi"]},
    ),
    "history's wake-ups": lambda: (
        history_repository._NOTIFY,
        {"channel": "fast_sql_test", "payloads": ["a", "b"]},
    ),
    "history's enabled endpoints": lambda: (webhook_events._ENABLED_ENDPOINTS, {}),
    "JSON and literal parameters": lambda: (
        select(
            bindparam("doc", type_=JSONB),
            bindparam("none", type_=JSONB),
            func.length(bindparam("text", type_=String)),
            bindparam("fixed", 7, type_=Integer),
        ),
        {"doc": {"a": [1, "ä"], "b": None}, "none": None, "text": "ääkköset"},
    ),
}


async def _seed(session: AsyncSession) -> None:
    await session.execute(insert(DoNotCall).values(phone=PHONE, created_at=NOW))
    await session.execute(
        insert(SlotBooking).values(
            queue="default",
            slot_start=NOW,
            slot_end=NOW + timedelta(minutes=15),
            capacity=2,
            booked=1,
            updated_at=NOW,
        )
    )
    # The ids are an identity the database gives; a seed names its own.
    for offset in (0, 1):
        await session.execute(
            text(
                "INSERT INTO callback.outbox (id, destination, path, payload, ordering_key,"
                " created_at, available_at, attempts) OVERRIDING SYSTEM VALUE"
                " VALUES (:id, 'history', '/v1/events', CAST(:payload AS jsonb), :key,"
                " :created_at, :created_at, 0)"
            ),
            {
                "id": SEEDED_OUTBOX_ID + offset,
                "payload": '{"type": "callback_created", "note": "ääkköset"}',
                "key": f"{PHONE}-{offset}",
                "created_at": NOW - timedelta(days=30),  # due whenever the test runs
            },
        )


async def _both_ways(
    sessions: async_sessionmaker[AsyncSession], statement: Any, params: dict[str, Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The statement's rows through SQLAlchemy, then through `fast_sql`, each in a
    transaction rolled back afterwards, on the same seeded rows."""
    answers = []
    for fast in (False, True):
        async with sessions() as session:
            await _seed(session)
            if fast:
                rows = await fast_sql.fetch(session, fast_sql.Statement.of(statement), params)
                answers.append([tuple(row.values()) for row in rows])
            else:
                result = await session.execute(statement, params)
                returns_rows = getattr(result, "returns_rows", True)  # False: DML with no RETURNING
                answers.append([tuple(row) for row in result.all()] if returns_rows else [])
            await session.rollback()
    return answers[0], answers[1]


@pytest.mark.parametrize("case", CASES)
async def test_a_statement_answers_the_same_both_ways(
    clean_db: None, sessions: async_sessionmaker[AsyncSession], case: str
) -> None:
    statement, params = CASES[case]()
    by_sqlalchemy, by_fast_sql = await _both_ways(sessions, statement, params)
    assert by_fast_sql == by_sqlalchemy
    if case in (
        "stored answer and do-not-call",
        "a seat taken",
        "a seat left",
        "seats booked in slots",
        "a queue chosen, with the number's open callback",
        "outbox rows claimed for a pass",
        "a pass's rows written back",
        "JSON and literal parameters",
    ):
        assert by_fast_sql, "the case was meant to answer something"


async def test_it_runs_in_the_sessions_transaction(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    take_seat = fast_sql.Statement.of(repository._TAKE_SEAT)
    seat = {
        "b_queue": "default",
        "b_start": NOW,
        "b_end": NOW + timedelta(minutes=15),
        "b_capacity": 5,
    }
    async with sessions() as session:
        await fast_sql.fetch(session, take_seat, seat)
        await session.rollback()
    async with unit_of_work(sessions) as session:
        await fast_sql.fetch(session, take_seat, seat)
        # The ORM's own statements in the same transaction see it before the commit.
        assert await session.scalar(repository._SEAT_LEFT, {**seat, "b_capacity": 2})
        await fast_sql.fetch(session, take_seat, seat)
    async with sessions() as session:
        booked = await session.scalar(select(func.sum(SlotBooking.booked)))
    assert booked == 2  # the rolled-back seat is not there, both committed ones are


# The statement's transaction's start: the same for every statement of one transaction.
_BEGAN = fast_sql.Statement.of(select(func.now()))


async def test_a_read_that_needs_no_transaction_runs_without_one_until_one_is_begun(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """`begin=False` saves the BEGIN (and ROLLBACK) round trips of a read that answers alone;
    once the transaction has begun, such a read runs in it and sees its writes."""
    take_seat = fast_sql.Statement.of(repository._TAKE_SEAT)
    seat = {
        "b_queue": "default",
        "b_start": NOW,
        "b_end": NOW + timedelta(minutes=15),
        "b_capacity": 1,
    }

    async def began(session: AsyncSession, *, begin: bool) -> datetime:
        moment: datetime = (await fast_sql.fetch(session, _BEGAN, {}, begin=begin))[0][0]
        return moment

    async with sessions() as session:
        alone = [await began(session, begin=False) for _ in range(2)]
        assert alone[0] != alone[1]  # each its own transaction
        # The default begins one, and every statement after is in it.
        inside = [await began(session, begin=True), await began(session, begin=False)]
        assert inside[0] == inside[1]
        await session.rollback()
    async with sessions() as session:
        alone_first = await began(session, begin=False)
        await fast_sql.fetch(session, take_seat, seat)  # begins the transaction, then writes
        assert await began(session, begin=False) != alone_first
        left = fast_sql.Statement.of(repository._SEAT_LEFT)
        # In the transaction: its own seat, not committed, fills the slot.
        assert (await fast_sql.fetch(session, left, seat, begin=False))[0][0] is False
        await session.rollback()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SlotBooking)) == 0


async def test_an_error_is_sqlalchemys_and_the_session_goes_on(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    add = fast_sql.Statement.of(insert(DoNotCall).values(phone=bindparam("p"), created_at=NOW))
    async with sessions() as session:
        await fast_sql.fetch(session, add, {"p": PHONE})
        with pytest.raises(IntegrityError):
            await fast_sql.fetch(session, add, {"p": PHONE})
        await session.rollback()
        await fast_sql.fetch(session, add, {"p": PHONE})
        await session.commit()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(DoNotCall)) == 1


def test_a_list_expanded_at_each_execution_is_refused() -> None:
    expanding = select(DoNotCall.phone).where(DoNotCall.phone.in_(bindparam("ps", expanding=True)))
    with pytest.raises(ValueError, match="computed at execution"):
        fast_sql.Statement.of(expanding)
