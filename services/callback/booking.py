"""Slots and seats: the capacity plan, what is left, and booking a callback into its one seat.

Locks are always taken in one order, the callback row first and then slot rows by start time,
so two rebookings that cross never deadlock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import inputs, lifecycle, notify, queues, repository
from services.callback.capacity import CapacityPlan, Slot, find_slot, iter_slots, parse_slot_id
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback, NotificationKind
from services.callback.schemas import SlotList, SlotOut
from services.callback.settings import CallbackSettings
from services.callback.templates import window_phrase
from shared import fast_update
from shared.contracts import Language
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.query_times import local_day_start
from shared.vocabulary import CallbackStatus

log = structlog.get_logger("ringback.callback")


async def list_slots(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    language: Language,
    queue: str = queues.DEFAULT,
) -> SlotList:
    """Every slot of `queue` with capacity starting in `[start, end)`, booked and left.

    Left out, `start` is now and `end` the end of the local day after `start`'s, in the
    queue's zone: what is still free today and all of tomorrow, the choice a caller is offered.
    """
    most = timedelta(days=settings.slots_max_range_days)
    if start is not None and end is not None:
        _check_slot_range(start, end, most)
    found = await repository.get_queue(session, queue)
    if found is None and queue != queues.DEFAULT:
        raise NotFound(f"No queue is called {queue!r}.")
    rules = queues.rules_of(found, settings)
    if start is None or end is None:
        start = now if start is None else start
        if end is None:
            try:
                # Clipped to the longest range allowed, which may be a single day.
                end = min(local_day_start(start, rules.zone, days_after=2), start + most)
            except OverflowError:  # the calendar ends before the day after `from`'s
                raise inputs.invalid(["query", "from"], "too far ahead to have slots") from None
        _check_slot_range(start, end, most)
    plan = rules.plan
    if plan is None:
        return SlotList(items=[], timezone=rules.zone.key, slot_minutes=None)
    slots = list(iter_slots(plan, start, end))
    booked = await repository.booked_between(session, queue, start, end)
    items = [_slot_out(slot, booked.get(slot.start, 0), now, language) for slot in slots]
    return SlotList(items=items, timezone=plan.timezone, slot_minutes=plan.slot_minutes)


def _check_slot_range(start: datetime, end: datetime, most: timedelta) -> None:
    if end <= start:
        raise inputs.invalid(["query", "to"], "must be after `from`")
    if end - start > most:
        raise inputs.invalid(["query", "to"], f"at most {most.days} days after `from`")


def _slot_out(slot: Slot, booked: int, now: datetime, language: Language) -> SlotOut:
    return SlotOut(
        id=slot.id,
        start=slot.start,
        end=slot.end,
        local_start=slot.local_start.isoformat(),
        local_end=slot.local_end.isoformat(),
        label=window_phrase(language, start=slot.start, end=slot.end, now=now, tz=slot.zone),
        capacity=slot.capacity,
        booked=booked,
        available=max(0, slot.capacity - booked),
    )


def slot_in(plan: CapacityPlan | None, slot_id: str) -> Slot | None:
    """`plan`'s slot named by `slot_id`, or None if there is no such slot."""
    start = parse_slot_id(slot_id)
    if start is None or plan is None:
        return None
    return find_slot(plan, start)


async def hold(session: AsyncSession, callback: Callback, slot: Slot, *, now: datetime) -> bool:
    """Give `callback` a seat in `slot`, giving back the seat it held; False if `slot` is full.

    On False nothing has changed but a released seat, so callers raise and roll back.
    """
    old = callback.slot_start
    if old == slot.start:
        return True
    if old is not None and old < slot.start:
        await _give_back(session, callback.queue, old, now=now)
    taken = await repository.take_seat(
        session, queue=callback.queue, start=slot.start, end=slot.end, capacity=slot.capacity
    )
    if not taken:
        return False
    if old is not None and old > slot.start:
        await _give_back(session, callback.queue, old, now=now)
    _assign(callback, slot)
    return True


def _assign(callback: Callback, slot: Slot) -> None:
    callback.slot_start, callback.slot_end = slot.start, slot.end
    callback.booking_seq += 1


async def release(session: AsyncSession, callback: Callback, *, now: datetime) -> None:
    """Give back the callback's seat (if the slot is still ahead) and forget the slot."""
    if callback.slot_start is None:
        return
    await _give_back(session, callback.queue, callback.slot_start, now=now)
    callback.slot_start = callback.slot_end = None
    await _cancel_reminders(session, callback)


async def release_if_ahead(session: AsyncSession, callback: Callback, *, now: datetime) -> None:
    """At the close of a callback: a seat in a slot still ahead is capacity for someone else.

    The slot of a callback worked in (or after) its slot stays booked and on record.
    """
    if callback.slot_start is not None and callback.slot_start > now:
        await release(session, callback, now=now)
    else:
        await _cancel_reminders(session, callback)


async def _cancel_reminders(session: AsyncSession, callback: Callback) -> None:
    await repository.cancel_notifications(
        session, callback_id=callback.id, kinds=(NotificationKind.REMINDER,)
    )


async def _give_back(session: AsyncSession, queue: str, start: datetime, *, now: datetime) -> None:
    if start > now:
        await repository.release_seat(session, queue=queue, start=start)


class SeatGone(Exception):
    """The slot a seat was pencilled into filled before the seat was taken (`take_pencilled_seat`).

    The transaction has written the booking and its messages for that slot: the caller rolls
    back and books again from a fresh read.
    """


async def book_earliest(
    session: AsyncSession,
    callback: Callback,
    plan: CapacityPlan,
    *,
    now: datetime,
    seat_last: bool = False,
) -> Slot | None:
    """Book the earliest slot with a free seat that ends by the callback's deadline; None if none.

    ASAP: starts from now, ends by the SLA deadline. A window: within the window.

    `seat_last`: the seat is only pencilled in, into the earliest slot the read showed room in,
    and `take_pencilled_seat` takes it as the transaction's last statement. Every ASAP call
    books the same earliest slot, so its row's lock, held from the seat to COMMIT, queues the
    booking jobs behind each other: taken first, it was held through the job's other writes
    and their round trips (174 ms of waiting per booking at 30 calls/s on two cores,
    bench/RESULTS.md); taken last, for one round trip. Without it, a full slot's refusal moves
    on to the next slot at once, which is what a caller that lost that race wants.
    """
    start = max(now, callback.window_start or now)
    end = callback.window_end or callback.sla_deadline
    candidates = [slot for slot in iter_slots(plan, start, end) if slot.end <= end]
    if not candidates:
        return None
    booked = await repository.booked_counts(
        session, callback.queue, [slot.start for slot in candidates]
    )
    for slot in candidates:
        if booked.get(slot.start, 0) >= slot.capacity:
            continue
        if seat_last:
            _assign(callback, slot)
            return slot
        if await hold(session, callback, slot, now=now):
            return slot
    return None


async def take_pencilled_seat(session: AsyncSession, callback: Callback, slot: Slot) -> None:
    """Take the seat `book_earliest(seat_last=True)` pencilled in; `SeatGone` if the slot filled.

    The callback's own row is written first, so that nothing but COMMIT follows the seat
    (without the ORM's flush: the job's last statement through it).
    """
    await fast_update.write_changes(session, callback)
    await session.flush()  # anything else the job added (a refusal's row): usually nothing
    taken = await repository.take_seat(
        session, queue=callback.queue, start=slot.start, end=slot.end, capacity=slot.capacity
    )
    if not taken:
        raise SeatGone(slot.start)


async def book(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    slot_ref_in: str,
    queue: NotificationQueue,
    actor: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Callback:
    """(Re)book `callback_id` into a slot: the old seat is given back in the same transaction.

    422 for a slot the plan does not have, 409 when it is full or the callback is closed.
    """
    now = now or utcnow()
    # A first look, with no lock and no transaction: most attempts at a popular slot are
    # refused, and one refused here costs a round trip and waits on nobody. A slot seen full
    # was full at that instant (a seat given back a moment later is a race the attempt lost).
    # Anything else is decided again on the locked callback below.
    look = await repository.peek_booking(session, callback_id, parse_slot_id(slot_ref_in))
    if look is None:
        raise NotFound("No callback has this id.")
    rules = queues.rules_of(look.queue, settings)
    wanted = _slot_to_book(look.status, look.slot_start, rules, slot_ref_in, now=now)
    if wanted is not None and not repository.has_room(look.booked, wanted.capacity):
        raise _slot_full()
    # The callback and its queue's rules in one round trip, the callback locked.
    found = await repository.lock_callback_with_queue(session, callback_id)
    if found is None:
        raise NotFound("No callback has this id.")
    callback, queue_row = found
    rules = queues.rules_of(queue_row, settings)
    slot = _slot_to_book(callback.status, callback.slot_start, rules, slot_ref_in, now=now)
    if slot is None:
        return callback
    had_slot = callback.slot_start is not None
    if not await hold(session, callback, slot, now=now):
        raise _slot_full()
    if had_slot:
        await _cancel_reminders(session, callback)
    callback.asap = False
    callback.flag = None
    callback.due_at = slot.start
    await lifecycle.transition(
        session,
        callback,
        CallbackStatus.SCHEDULED,
        now=now,
        summary="Booked into another slot",
        actor=actor,
    )
    zone = rules.zone
    await notify.send(
        session,
        queue,
        settings=settings,
        callback=callback,
        messages=[
            notify.rebooked(settings, callback, now=now, zone=zone),
            notify.reminder(settings, callback, now=now, zone=zone),
        ],
        now=now,
        rules=rules,
    )
    return callback


def _slot_to_book(
    status: str,
    held: datetime | None,
    rules: queues.QueueRules,
    slot_ref_in: str,
    *,
    now: datetime,
) -> Slot | None:
    """The slot a callback in `status`, holding a seat in the slot starting at `held`, is to be
    booked into (None: it holds it already); 409 for a callback that cannot be scheduled, 422
    for a slot its queue's plan does not have or that is over."""
    lifecycle.check_status(status, CallbackStatus.SCHEDULED)
    slot = slot_in(rules.plan, slot_ref_in)
    if slot is None:
        raise inputs.invalid(["body", "slot_id"], "no such slot in the capacity plan")
    if slot.end <= now:
        raise inputs.invalid(["body", "slot_id"], "that slot is over")
    if held == slot.start and status == CallbackStatus.SCHEDULED:
        return None
    return slot


def _slot_full() -> Conflict:
    return Conflict("That slot is full; choose another.", slug="slot-full")
