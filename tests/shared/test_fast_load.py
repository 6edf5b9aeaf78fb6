"""Whole rows read on asyncpg directly (`shared.fast_load`) are the objects the ORM's own load
gives: the same attributes, persistent in the session, changes written at commit, an object the
session held refreshed, the row locked as the statement says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import repository
from services.callback.models import Callback, Queue, SlotBooking
from shared import fast_load

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
LOCK = repository._LOCK_WITH_QUEUE
FAST_LOCK = fast_load.Load.of(LOCK)


def _callback(id_: str, **values: Any) -> Callback:
    fields: dict[str, Any] = {
        "id": id_,
        "phone": "+358401234567",
        "language": "fi",
        "source": "missed_call",
        "channel": "phone",
        "priority": 0,
        "first_contact_at": NOW,
        "due_at": NOW,
        "sla_deadline": NOW + timedelta(hours=2),
        "contact_count": 1,
        "consent_sms": True,
        "consent_email": True,
        "asap": True,
        "booking_seq": 0,
        "attempt_count": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(values)
    return Callback(**fields)


async def _seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        session.add(
            Queue(
                key="billing",
                name="Laskutus",
                timezone="Europe/Helsinki",
                language_wait_minutes=None,
                config={"languages": ["fi", "sv"], "note": "ääkköset", "none": None},
                created_at=NOW,
                updated_at=NOW,
            )
        )
        # The seat the full one holds (its slot is a foreign key).
        session.add(
            SlotBooking(
                queue="billing",
                slot_start=NOW + timedelta(hours=1),
                slot_end=NOW + timedelta(hours=1, minutes=15),
                capacity=2,
                booked=1,
                updated_at=NOW,
            )
        )
        await session.flush()
        session.add_all(
            [
                # In a queue with a row, every optional field set.
                _callback(
                    "cb-full",
                    queue="billing",
                    queue_reason="dialed +35891234567",
                    email="maija@example.fi",
                    name="Maija Meikäläinen",
                    window_start=NOW + timedelta(hours=1),
                    window_end=NOW + timedelta(hours=3),
                    slot_start=NOW + timedelta(hours=1),
                    slot_end=NOW + timedelta(hours=1, minutes=15),
                    flag="no_slot_before_deadline",
                    confirm_key="confirmation:cb-full:r-1",
                    language_known=False,
                ),
                # In `default`, which has no row: the outer join's miss.
                _callback("cb-bare"),
            ]
        )
        await session.commit()


def _columns(instance: object) -> dict[str, Any]:
    state = inspect(instance)
    columns = {p.key: state.dict.get(p.key, "<unloaded>") for p in state.mapper.column_attrs}
    # What is left to load, and how: a deferred column by its loader, not as expired.
    return {**columns, "<unloaded>": state.unloaded, "<expired>": set(state.expired_attributes)}


async def _both_ways(
    sessions: async_sessionmaker[AsyncSession], statement: Any, callback_id: str
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    answers = []
    for fast in (False, True):
        async with sessions() as session:
            if fast:
                load = fast_load.Load.of(statement)
                rows = await load.rows(session, {"callback_id": callback_id})
            else:
                result = await session.execute(statement, {"callback_id": callback_id})
                rows = [tuple(row) for row in result.all()]
            assert len(rows) == 1
            callback, queue = (*rows[0], None)[:2]
            state = inspect(callback)
            assert state.persistent
            assert state.session_id == session.sync_session.hash_key
            assert callback not in session.dirty
            answers.append((_columns(callback), None if queue is None else _columns(queue)))
            await session.rollback()
    return answers


@pytest.mark.parametrize("callback_id", ["cb-full", "cb-bare"])
@pytest.mark.parametrize("statement", ["with its queue", "alone"])
async def test_the_objects_are_the_orms(
    clean_db: None, sessions: async_sessionmaker[AsyncSession], statement: str, callback_id: str
) -> None:
    await _seed(sessions)
    alone = statement == "alone"
    lock = repository._LOCK_CALLBACK if alone else LOCK
    by_orm, by_fast_load = await _both_ways(sessions, lock, callback_id)
    assert by_fast_load == by_orm
    callback, queue = by_fast_load
    assert callback["id"] == callback_id
    # The deferred column is left for a read of its own, as the ORM leaves it.
    assert callback["rank_at"] == "<unloaded>"
    assert callback["<unloaded>"] == {"rank_at", "notifications", "attempts"}
    if alone:
        assert queue is None
    elif callback_id == "cb-full":
        assert queue is not None
        assert queue["config"]["note"] == "ääkköset"
        assert callback["name"] == "Maija Meikäläinen"
    else:
        assert queue is None


async def test_a_change_is_written_at_commit_and_validators_still_guard(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _seed(sessions)
    async with sessions() as session:
        [(callback, _queue)] = await FAST_LOCK.rows(session, {"callback_id": "cb-full"})
        assert isinstance(callback, Callback)
        callback.flag = None
        callback.name = "Maija M."
        with pytest.raises(RuntimeError, match=r"lifecycle\.transition"):
            callback.status = "scheduled"  # a stored callback's: only the lifecycle may
        await session.commit()
    async with sessions() as session:
        rows = (await session.execute(select(Callback.id, Callback.flag, Callback.name))).all()
    assert sorted(tuple(row) for row in rows) == [
        ("cb-bare", None, None),
        ("cb-full", None, "Maija M."),
    ]


async def test_an_object_the_session_holds_is_refreshed_in_place(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _seed(sessions)
    names = []
    for fast in (False, True):
        async with sessions() as session:
            held = await session.get(Callback, "cb-full")
            assert held is not None
            held.name = "changed in memory"
            # Another transaction changed the row since.
            async with sessions() as other:
                await other.execute(
                    text("UPDATE callback.callbacks SET name = 'in SQL' WHERE id = 'cb-full'")
                )
                await other.commit()
            if fast:
                [(callback, _)] = await FAST_LOCK.rows(session, {"callback_id": "cb-full"})
            else:
                [(callback, _)] = (await session.execute(LOCK, {"callback_id": "cb-full"})).all()
            assert callback is held
            names.append(callback.name)
            await session.rollback()
        async with sessions() as session:
            await session.execute(
                text("UPDATE callback.callbacks SET name = 'Maija' WHERE id = 'cb-full'")
            )
            await session.commit()
    assert names == ["in SQL", "in SQL"]


async def test_the_row_is_locked_until_commit(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _seed(sessions)
    async with sessions() as holder, sessions() as waiter:
        await FAST_LOCK.rows(holder, {"callback_id": "cb-full"})
        await waiter.execute(text("SET LOCAL lock_timeout = '200ms'"))
        with pytest.raises(DBAPIError, match="lock timeout"):
            await FAST_LOCK.rows(waiter, {"callback_id": "cb-full"})
        await waiter.rollback()
        await holder.commit()
        # Released: the other row was never locked, and this one is free now.
        assert await FAST_LOCK.rows(waiter, {"callback_id": "cb-full"})
        await waiter.rollback()


def test_a_statement_of_columns_is_refused() -> None:
    for statement in (select(Callback.id, Queue), select(Callback.id), select(Queue.key)):
        with pytest.raises(ValueError, match="whole entities first"):
            fast_load.Load.of(statement)


@pytest.mark.parametrize(
    ("callback_id", "slot_start", "booked"),
    [("cb-full", NOW + timedelta(hours=1), 1), ("cb-full", NOW, None), ("cb-bare", NOW, None)],
)
async def test_plain_values_after_the_entities_are_the_orms(
    clean_db: None,
    sessions: async_sessionmaker[AsyncSession],
    callback_id: str,
    slot_start: datetime,
    booked: int | None,
) -> None:
    """A booking's first look: the queue, then the callback's status and slot and the slot's
    seat count as plain values."""
    await _seed(sessions)
    params = {"callback_id": callback_id, "slot_start": slot_start}
    answers = []
    for fast in (False, True):
        async with sessions() as session:
            if fast:
                rows = await fast_load.Load.of(repository._PEEK_BOOKING).rows(
                    session, params, begin=False
                )
            else:
                result = await session.execute(repository._PEEK_BOOKING, params)
                rows = [tuple(row) for row in result.all()]
            [(queue, *values)] = rows
            assert queue is None or inspect(queue).persistent
            answers.append((queue and _columns(queue), values))
            await session.rollback()
    assert answers[1] == answers[0]
    queue_columns, (status, held, count) = answers[1]
    assert count == booked
    assert status == "pending"
    assert held == (NOW + timedelta(hours=1) if callback_id == "cb-full" else None)
    assert (queue_columns is None) is (callback_id == "cb-bare")


async def test_an_object_expired_by_a_rollback_is_loaded_again(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The booking job's retry after a lost seat: the same session, its objects expired."""
    await _seed(sessions)
    answers = []
    for fast in (False, True):
        async with sessions() as session:
            await session.execute(LOCK, {"callback_id": "cb-full"})
            await session.rollback()
            if fast:
                [(callback, queue)] = await FAST_LOCK.rows(session, {"callback_id": "cb-full"})
            else:
                [(callback, queue)] = (
                    await session.execute(LOCK, {"callback_id": "cb-full"})
                ).all()
            # Read without a load of its own (one here would fail: no greenlet for its IO).
            assert isinstance(callback, Callback)
            assert callback.name == "Maija Meikäläinen"
            assert queue is not None
            assert queue.config["note"] == "ääkköset"
            answers.append((_columns(callback), _columns(queue)))
            await session.rollback()
    assert answers[1] == answers[0]
