"""A loaded object's changes written by `shared.fast_update` leave the row the ORM's flush
leaves: the changed columns, the `onupdate` ones, nothing for a value set back, and an object
with nothing left to flush."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from services.callback import repository
from services.callback.models import Callback
from shared import fast_update
from tests.shared.test_fast_load import NOW, _seed

LATER = NOW + timedelta(minutes=5)


def _book(callback: Callback) -> None:
    callback.slot_start = NOW + timedelta(hours=1)
    callback.slot_end = NOW + timedelta(hours=1, minutes=15)
    callback.flag = None
    callback.confirm_key = None
    callback.updated_at = LATER


def _nulls_and_flags(callback: Callback) -> None:
    callback.name = None
    callback.language_known = True
    callback.attempt_count = 3


def _set_back(callback: Callback) -> None:
    callback.name = "something else"
    callback.name = "Maija Meikäläinen"  # as loaded: nothing to write


# What a change does to cb-full (all in Python, so both ways get the same changes).
CHANGES: dict[str, Callable[[Callback], None]] = {
    "booked, updated_at set": _book,
    "set to null, a flag and a count; updated_at by onupdate": _nulls_and_flags,
    "set back to the loaded value": _set_back,
}


async def _row(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as session:
        row = (
            await session.execute(text("SELECT * FROM callback.callbacks WHERE id = 'cb-full'"))
        ).one()
    return dict(row._mapping)


@pytest.mark.parametrize("change", CHANGES)
async def test_the_row_is_the_flushs(
    clean_db: None,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    change: str,
) -> None:
    statements: list[str] = []

    def heard(*args: Any) -> None:
        statements.append(args[2])

    rows = []
    for fast in (False, True):
        await _seed(sessions)
        before = await _row(sessions)
        async with sessions() as session:
            callback = await repository.lock_callback(session, "cb-full")
            assert callback is not None
            CHANGES[change](callback)
            event.listen(engine.sync_engine, "before_cursor_execute", heard)
            try:
                if fast:
                    await fast_update.write_changes(session, callback)
                    assert not inspect(callback).attrs.name.history.has_changes()
                await session.flush()
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", heard)
            await session.commit()
        after = await _row(sessions)
        rows.append(after)
        async with sessions() as session:
            await session.execute(
                text("TRUNCATE callback.callbacks, callback.slot_bookings CASCADE")
            )
            await session.execute(text("DELETE FROM callback.queues"))
            await session.commit()
        if change == "set to null, a flag and a count; updated_at by onupdate":
            assert after["updated_at"] > before["updated_at"]
    updates = [s for s in statements if s.startswith("UPDATE")]
    if change == "set back to the loaded value":
        assert updates == []
        assert rows[0] == rows[1]
        return
    assert len(updates) == 2  # one each way: the flush after the fast write found nothing
    by_flush, by_fast_update = rows
    # `onupdate` is the time of each write: the same rule, a few milliseconds apart.
    if change.endswith("by onupdate"):
        assert abs(by_fast_update.pop("updated_at") - by_flush.pop("updated_at")) < timedelta(
            seconds=5
        )
    assert by_fast_update == by_flush


async def test_a_row_that_is_gone_is_stale_data(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _seed(sessions)
    async with sessions() as session:
        callback = await session.get(Callback, "cb-bare")
        assert callback is not None
        await session.execute(text("DELETE FROM callback.callbacks WHERE id = 'cb-bare'"))
        callback.name = "gone"
        with pytest.raises(StaleDataError):
            await fast_update.write_changes(session, callback)
        await session.rollback()


async def test_a_new_object_is_refused(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        callback = (await session.execute(select(Callback).limit(1))).scalar()
        assert callback is None
        with pytest.raises(ValueError, match="loaded in this session"):
            await fast_update.write_changes(
                session, Callback(id="new", updated_at=datetime.now(UTC))
            )
