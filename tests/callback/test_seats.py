"""`repository.take_seat`: the seat count under the row lock, and no waiting to be told "full".

A popular slot gets many more attempts than seats. Each refused attempt used to lock the
slot's row (an `INSERT ... ON CONFLICT DO UPDATE` locks the row even when its condition
fails), so refusals queued behind whichever transaction held it. Now a slot whose row shows
no room is refused without touching the lock, and one that shows room is still decided on
the row once locked. (tests/callback/test_booking.py holds "never overbooked" under
hundreds of concurrent bookings through the API.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import repository

START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
END = START + timedelta(minutes=15)


async def _take(sessions: async_sessionmaker[AsyncSession], capacity: int = 2) -> bool:
    async with sessions() as session:
        # Waiting on a row lock would fail here instead of passing slowly.
        await session.execute(text("SET LOCAL lock_timeout = '2s'"))
        taken = await repository.take_seat(
            session, queue="default", start=START, end=END, capacity=capacity
        )
        await session.commit()
    return taken


async def _booked(sessions: async_sessionmaker[AsyncSession]) -> int | None:
    async with sessions() as session:
        found = await session.scalar(
            text("SELECT booked FROM callback.slot_bookings WHERE slot_start = :s"), {"s": START}
        )
    return None if found is None else int(found)


@pytest.mark.usefixtures("clean_db")
async def test_seats_are_taken_up_to_capacity_then_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _booked(sessions) is None
    assert await _take(sessions) is True  # the slot's first seat makes its row
    assert await _take(sessions) is True
    assert await _take(sessions) is False
    assert await _booked(sessions) == 2
    # A larger plan later: the same row takes one more.
    assert await _take(sessions, capacity=3) is True
    assert await _booked(sessions) == 3


@pytest.mark.usefixtures("clean_db")
async def test_a_full_slot_refuses_without_waiting_on_its_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _take(sessions, capacity=1) is True
    async with sessions() as holder:
        # Someone holds the full slot's row (a rebooking giving a seat back, say).
        await holder.execute(
            text("SELECT 1 FROM callback.slot_bookings WHERE slot_start = :s FOR UPDATE"),
            {"s": START},
        )
        assert await _take(sessions, capacity=1) is False
        await holder.rollback()


@pytest.mark.usefixtures("clean_db")
async def test_a_slot_with_room_still_waits_for_the_row_and_counts_after(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The last seat, taken by a transaction not yet committed: a second attempt must wait for
    it and then be refused, not take a seat too many."""
    assert await _take(sessions) is True
    async with sessions() as first:
        assert await repository.take_seat(first, queue="default", start=START, end=END, capacity=2)
        with pytest.raises(DBAPIError, match="lock timeout"):
            await _take(sessions)
        await first.commit()
    assert await _take(sessions) is False
    assert await _booked(sessions) == 2


@pytest.mark.usefixtures("clean_db")
async def test_the_rule_for_a_count_read_without_the_lock_is_the_statements_rule(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """`has_room` (a booking's first look, booking.book) answers as `take_seat` does, for a
    slot with no row yet and for every count up to and past its capacity."""
    for capacity in (0, 1, 2, 3):
        for booked in (None, *range(capacity + 2)):
            async with sessions() as session:
                if booked is not None:
                    await session.execute(
                        text(
                            "INSERT INTO callback.slot_bookings "
                            "(queue, slot_start, slot_end, capacity, booked, updated_at) "
                            "VALUES ('default', :s, :e, :b, :b, now())"
                        ),
                        {"s": START, "e": END, "b": booked},
                    )
                taken = await repository.take_seat(
                    session, queue="default", start=START, end=END, capacity=capacity
                )
                await session.rollback()
            assert repository.has_room(booked or 0, capacity) is taken, (capacity, booked)
