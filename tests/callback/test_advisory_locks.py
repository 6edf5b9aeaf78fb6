"""Issue #21: an advisory lock the transaction already holds is not asked for again.

A booking's confirmation and its reminder both pass the same number's SMS ceiling, which
locks the number: the second ask was a round trip that could change nothing. What must stay
true is what the lock is for: another transaction cannot take it until this one ends, and a
lock freed by rolling back a savepoint is taken again when asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import ceilings, repository
from shared.vocabulary import NotificationChannel


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


async def _free_elsewhere(sessions: async_sessionmaker[AsyncSession], namespace: str) -> bool:
    """Whether another transaction could take the lock on `namespace`:`value` right now."""
    key = repository._lock_key(namespace, "+358401234567")
    async with sessions() as other:
        taken = await other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
        await other.rollback()
    return bool(taken)


async def test_a_lock_held_is_asked_once_and_still_holds_others_off(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        with _statements() as sent:
            await repository.lock(session, "ceiling:sms", "+358401234567")
            await repository.lock(session, "ceiling:sms", "+358401234567")
        assert len([s for s in sent if "pg_advisory_xact_lock" in s]) == 1
        assert not await _free_elsewhere(sessions, "ceiling:sms")
        await session.commit()
        assert await _free_elsewhere(sessions, "ceiling:sms")

        # A new transaction of the same session holds nothing yet: it asks again.
        with _statements() as sent:
            await repository.lock(session, "ceiling:sms", "+358401234567")
        assert len([s for s in sent if "pg_advisory_xact_lock" in s]) == 1
        assert not await _free_elsewhere(sessions, "ceiling:sms")
        await session.rollback()
    assert await _free_elsewhere(sessions, "ceiling:sms")


async def test_only_the_locks_not_held_are_asked_for(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await repository.lock(session, "phone", "+358401234567")
        with _statements() as sent:
            await repository.lock_in_order(
                session, ("phone", "+358401234567"), ("request", "+358401234567")
            )
        assert len(sent) == 1
        assert sent[0].count("pg_advisory_xact_lock") == 1
        assert not await _free_elsewhere(sessions, "request")
        await session.rollback()


async def test_a_lock_from_a_rolled_back_savepoint_is_taken_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await session.execute(text("SELECT 1"))
        savepoint = await session.begin_nested()
        await repository.lock(session, "phone", "+358401234567")
        await savepoint.rollback()
        assert await _free_elsewhere(sessions, "phone"), "PostgreSQL freed it with the savepoint"
        with _statements() as sent:
            await repository.lock(session, "phone", "+358401234567")
        assert len(sent) == 1
        assert not await _free_elsewhere(sessions, "phone")
        await session.rollback()


async def test_a_messages_first_questions_take_the_sms_ceilings_lock(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A message asks whether it was written already and whether the number may be called;
    the same round trip takes the lock its SMS ceiling counts under, so the ceiling's own
    `lock` sends nothing, and the lock holds others off until the transaction ends."""
    lock = ceilings.recipient_lock(NotificationChannel.SMS, "+358401234567")
    async with sessions() as session:
        with _statements() as sent:
            written, do_not_call = await repository.keys_used_and_do_not_call(
                session, ["confirm:1", "reminder:1"], "+358401234567", locks=[lock]
            )
            await repository.lock(session, *lock)
        assert (written, do_not_call) == (set(), False)
        assert len(sent) == 1
        assert not await _free_elsewhere(sessions, lock[0])
        await session.rollback()
    assert await _free_elsewhere(sessions, lock[0])
