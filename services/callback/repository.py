"""All of callback's SQL: the ORM reads and writes, and the worker's statements built once.

One condition is declared elsewhere: when a notification may be sent (`send_rule`), because the
worker's careful path decides the same thing in Python and both must read one declaration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, cast

from asyncpg import Record
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    DateTime,
    Exists,
    Integer,
    Row,
    ScalarSelect,
    Select,
    String,
    Table,
    Text,
    TextClause,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from services.callback import send_rule
from services.callback.models import (
    ERASED_RECIPIENT,
    WAITING_STATUSES,
    Agent,
    Attempt,
    Callback,
    CallbackOutbox,
    CallbackRequest,
    Dial,
    DoNotCall,
    NoMarketing,
    Notification,
    NotificationKind,
    ProcessedRequest,
    PromiseMark,
    Queue,
    QueueNumber,
    SelfServiceChange,
    SlotBooking,
    Survey,
    Voicemail,
)
from services.callback.promise import promised_by_sql
from shared import fast_load, fast_sql
from shared.db import utcnow
from shared.outbox import add_rows, insert_rows, notify_once, rows_params
from shared.vocabulary import (
    OPEN_STATUSES,
    RUNNING_DIAL_STATUSES,
    UNFINISHED_NOTIFICATION_STATUSES,
    AttemptOutcome,
    CallbackStatus,
    DialStatus,
    LineResult,
    NotificationChannel,
    NotificationStatus,
    SurveyStatus,
)


def _lock_key(namespace: str, value: str) -> int:
    """A signed 64-bit advisory-lock key for `value` within `namespace`."""
    digest = hashlib.sha256(f"ringback.callback.{namespace}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock(session: AsyncSession, namespace: str, value: str) -> None:
    """Serialise transactions on one value (a number, a request id) until commit."""
    await lock_in_order(session, (namespace, value))


async def lock_in_order(session: AsyncSession, *values: tuple[str, str]) -> None:
    """`lock` each (namespace, value) in the order given, in one round trip: PostgreSQL
    evaluates a select list left to right, and that order is what keeps writers that take
    the same locks from deadlocking."""
    keys = [_lock_key(namespace, value) for namespace, value in values]
    held = _held_locks(session)
    wanted = [key for key in keys if key not in held]
    if not wanted:
        return
    params = {f"key{i}": key for i, key in enumerate(wanted)}
    await fast_sql.fetch(session, fast_sql.compiled(_locks(len(wanted))), params)
    _remember_locks(session, wanted)


# The advisory locks the session's transaction holds already: asking again would only cost a
# round trip (a booking's confirmation and its reminder each pass the same number's SMS
# ceiling). Kept with the transaction they belong to, so a new transaction starts with none;
# one taken inside a savepoint is not remembered, since rolling the savepoint back frees it.
_HELD_LOCKS = "ringback.advisory_locks_held"


def _remember_locks(session: AsyncSession, keys: Iterable[int]) -> None:
    """Note locks just taken (after the statement: it began the transaction if none had)."""
    if not session.in_nested_transaction():
        transaction = session.sync_session.get_transaction()
        session.info[_HELD_LOCKS] = (transaction, {*_held_locks(session), *keys})


def _held_locks(session: AsyncSession) -> frozenset[int] | set[int]:
    remembered = session.info.get(_HELD_LOCKS)
    if remembered is None or remembered[0] is not session.sync_session.get_transaction():
        return frozenset()
    held: set[int] = remembered[1]
    return held


@cache
def _locks(count: int) -> TextClause:
    calls = ", ".join(f"pg_advisory_xact_lock(:key{i})" for i in range(count))
    return text(f"SELECT {calls}")


async def find_open_for_phone(session: AsyncSession, phone: str, queue: str) -> Callback | None:
    """The open callback of an E.164 number in `queue` (one at most), locked for update."""
    return await session.scalar(_OPEN_FOR_PHONE_IN_QUEUE, {"phone": phone, "queue": queue})


def _open_in(queue: ColumnElement[str]) -> ColumnElement[bool]:
    """The one rule of "the number's open callback in a queue": one per number and queue."""
    open_statuses = [literal(status, Callback.status.type) for status in OPEN_STATUSES]
    return and_(
        Callback.phone == bindparam("phone", type_=Callback.phone.type),
        Callback.queue == queue,
        Callback.status.in_(open_statuses),
    )


# Built once, as every statement on the create path: building it cost about as much CPU as
# its round trip (bench/RESULTS.md, issue #21).
_OPEN_FOR_PHONE_IN_QUEUE = (
    select(Callback)
    .where(_open_in(bindparam("queue", type_=Callback.queue.type)))
    .with_for_update()
)


async def open_for_phone(session: AsyncSession, phone: str) -> Sequence[Callback]:
    """Every open callback of an E.164 number, one per queue at most, locked for update."""
    query = (
        select(Callback)
        .where(Callback.phone == phone, Callback.status.in_(OPEN_STATUSES))
        .order_by(Callback.id)
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def get_callback(
    session: AsyncSession, callback_id: str, *, with_notifications: bool = False
) -> Callback | None:
    query = select(Callback).where(Callback.id == callback_id)
    if with_notifications:
        query = query.options(selectinload(Callback.notifications), selectinload(Callback.attempts))
    return await session.scalar(query)


async def find_callback(session: AsyncSession, callback_id: str) -> Callback | None:
    """By primary key: from the session's identity map when it holds it, else one SELECT."""
    return await session.get(Callback, callback_id)


_LOCK_CALLBACK = (
    select(Callback)
    .where(Callback.id == bindparam("callback_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
# Without the ORM's execution, as `_FAST_LOCK_WITH_QUEUE` below: every agent's action locks so.
_FAST_LOCK_CALLBACK = fast_load.Load.of(_LOCK_CALLBACK)


async def lock_callback(session: AsyncSession, callback_id: str) -> Callback | None:
    """The callback, locked until commit: every change of state goes through this."""
    rows = await _FAST_LOCK_CALLBACK.rows(session, {"callback_id": callback_id})
    callback: Callback | None = rows[0][0] if rows else None
    return callback


# The callback with its queue's row (None: `default`, which may have no row) in one statement,
# so that the booking job needs no look-up of its own for the queue's rules.
_WITH_QUEUE = (
    select(Callback, Queue)
    .outerjoin(Queue, Queue.key == Callback.queue)
    .where(Callback.id == bindparam("callback_id"))
)
_LOCK_WITH_QUEUE = _WITH_QUEUE.with_for_update(of=Callback).execution_options(
    populate_existing=True
)
# Run without the ORM's execution (`shared.fast_load`): every booking attempt and booking job
# locks this way, and most attempts are refused, so the ORM's load was most of their CPU.
_FAST_LOCK_WITH_QUEUE = fast_load.Load.of(_LOCK_WITH_QUEUE)


async def lock_callback_with_queue(
    session: AsyncSession, callback_id: str
) -> tuple[Callback, Queue | None] | None:
    """`lock_callback`, and the callback's queue row (not locked), in one round trip."""
    rows = await _FAST_LOCK_WITH_QUEUE.rows(session, {"callback_id": callback_id})
    if not rows:
        return None
    callback, queue = rows[0]
    return cast(Callback, callback), cast(Queue | None, queue)


# A booking attempt's first look, with no lock and no transaction: what its refusal needs of
# the callback (its status and slot), its queue's row, and the seats taken in the slot asked
# for. Not the callback as an object: an attempt that goes on locks and loads it anyway.
_PEEK_BOOKING = (
    select(
        Queue,
        Callback.status,
        Callback.slot_start,
        select(SlotBooking.booked)
        .where(
            SlotBooking.queue == Callback.queue,
            SlotBooking.slot_start == bindparam("slot_start", type_=DateTime(timezone=True)),
        )
        .scalar_subquery(),
    )
    .select_from(Callback)
    .outerjoin(Queue, Queue.key == Callback.queue)
    .where(Callback.id == bindparam("callback_id"))
)
_FAST_PEEK_BOOKING = fast_load.Load.of(_PEEK_BOOKING)


@dataclass(frozen=True, slots=True)
class BookingLook:
    """A callback as a booking attempt first sees it (`peek_booking`)."""

    status: str
    slot_start: datetime | None
    queue: Queue | None  # None: `default`, which may have no row
    booked: int  # seats taken in the slot asked for (0: none yet)


async def peek_booking(
    session: AsyncSession, callback_id: str, slot_start: datetime | None
) -> BookingLook | None:
    """The callback's status and slot (not locked), its queue row, and the seats taken in its
    queue's slot at `slot_start`, as committed when the statement began; None: no callback.

    As the transaction's first statement it runs alone (`fast_sql`'s `begin=False`): a booking
    refused from this look costs one round trip, and waits on nobody's lock.
    """
    rows = await _FAST_PEEK_BOOKING.rows(
        session, {"callback_id": callback_id, "slot_start": slot_start}, begin=False
    )
    if not rows:
        return None
    queue, status, slot, booked = rows[0]
    return BookingLook(str(status), slot, cast(Queue | None, queue), int(booked or 0))


# ----------------------------------------------------------------------------- slots


# The booking job's statements, built once (building one per call cost about as much CPU as
# its round trip: bench/RESULTS.md, issue #21). `take_seat`'s `excluded` alone built a column
# proxy per column of `slot_bookings` on every call.
# Seats taken in a list of slots: the list as one array parameter (`= ANY`), so the statement
# is compiled once whatever the number of slots (`shared.fast_sql`; `IN` with a list expands
# at every execution).
_BOOKED_COUNTS = select(SlotBooking.slot_start, SlotBooking.booked).where(
    SlotBooking.queue == bindparam("queue", type_=String),
    SlotBooking.slot_start == func.any(bindparam("starts", type_=ARRAY(DateTime(timezone=True)))),
)
_FAST_BOOKED_COUNTS = fast_sql.Statement.of(_BOOKED_COUNTS)


async def booked_counts(
    session: AsyncSession, queue: str, starts: Sequence[datetime]
) -> dict[datetime, int]:
    """Seats taken in each of these slots of `queue` (absent: none)."""
    if not starts:
        return {}
    params = {"queue": queue, "starts": list(starts)}
    rows = await fast_sql.fetch(session, _FAST_BOOKED_COUNTS, params)
    return {row[0]: row[1] for row in rows}


async def booked_between(
    session: AsyncSession, queue: str, start: datetime, end: datetime
) -> dict[datetime, int]:
    rows = await session.execute(
        select(SlotBooking.slot_start, SlotBooking.booked).where(
            SlotBooking.queue == queue,
            SlotBooking.slot_start >= start,
            SlotBooking.slot_start < end,
        )
    )
    return {row[0]: row[1] for row in rows}


def _take_seat_statement() -> Any:
    slot = SlotBooking
    queue = bindparam("b_queue", type_=String)
    start = bindparam("b_start", type_=DateTime(timezone=True))
    capacity = bindparam("b_capacity", type_=Integer)
    # A seat in a slot that has its row: only a row that shows room is locked (a full slot's
    # is not even waited on); the condition is checked again on the row once locked.
    taken = (
        update(slot)
        .where(slot.queue == queue, slot.slot_start == start, slot.booked < capacity)
        .values(booked=slot.booked + 1, capacity=capacity, updated_at=func.now())
        .returning(slot.booked)
        .cte("taken")
    )
    # The slot's first seat: its row, unless one is there (then nobody took a seat here).
    first = (
        insert(slot)
        .from_select(
            ["queue", "slot_start", "slot_end", "capacity", "booked", "updated_at"],
            select(
                queue,
                start,
                bindparam("b_end", type_=DateTime(timezone=True)),
                capacity,
                literal(1),
                func.now(),
            ).where(~exists(select(taken.c.booked))),
        )
        .on_conflict_do_nothing(index_elements=[slot.queue, slot.slot_start])
        .returning(slot.booked)
        .cte("first")
    )
    return select(taken.c.booked).union_all(select(first.c.booked))


_TAKE_SEAT = _take_seat_statement()
# Whether a slot has room, read afresh: after `_TAKE_SEAT` took nothing, either the slot is
# full or its row appeared (or a seat came free) after that statement's snapshot.
_SEAT_LEFT = select(SlotBooking.booked < bindparam("b_capacity", type_=Integer)).where(
    SlotBooking.queue == bindparam("b_queue"), SlotBooking.slot_start == bindparam("b_start")
)
_SEAT_TRIES = 3
_FAST_TAKE_SEAT = fast_sql.Statement.of(_TAKE_SEAT)
_FAST_SEAT_LEFT = fast_sql.Statement.of(_SEAT_LEFT)


def has_room(booked: int, capacity: int) -> bool:
    """Whether a slot with `booked` seats taken of `capacity` has one more: the rule
    `_TAKE_SEAT` and `_SEAT_LEFT` state in SQL, for a count read without the row's lock
    (`booking.book`'s first look; tests/callback/test_seats.py holds the two equal)."""
    return booked < capacity


async def take_seat(
    session: AsyncSession, *, queue: str, start: datetime, end: datetime, capacity: int
) -> bool:
    """Take one seat in `queue`'s slot if one is free; the database refuses the seat past the last.

    One statement in the common case: an `UPDATE ... WHERE booked < :capacity` of the slot's
    row, or its first seat's `INSERT` when it has none. The condition is evaluated again on the
    row once locked, after any concurrent writer has committed, and `CHECK (booked <=
    capacity)` stands behind it. A full slot's row is not locked, so the many refused
    attempts of a popular slot do not queue behind each other (bench/booking.py). A refusal
    is confirmed by a fresh read; a seat freed or a row made meanwhile is tried again, a few
    times at most (then refused: never a seat too many).
    """
    if not has_room(0, capacity):
        return False
    params = {"b_queue": queue, "b_start": start, "b_end": end, "b_capacity": capacity}
    for _ in range(_SEAT_TRIES):
        if await fast_sql.fetch(session, _FAST_TAKE_SEAT, params):
            return True
        left = await fast_sql.fetchrow(session, _FAST_SEAT_LEFT, params)
        if left is None or not left[0]:
            return False
    return False


# (`b_`: a bind named as a column is reserved in an INSERT or UPDATE.)
_RELEASE_SEAT = (
    update(SlotBooking)
    .where(
        SlotBooking.queue == bindparam("b_queue"),
        SlotBooking.slot_start == bindparam("b_start"),
        SlotBooking.booked > 0,
    )
    .values(booked=SlotBooking.booked - 1, updated_at=func.now())
)


async def release_seat(session: AsyncSession, *, queue: str, start: datetime) -> None:
    await session.execute(_RELEASE_SEAT, {"b_queue": queue, "b_start": start})


# ----------------------------------------------------------------------------- queues


async def ensure_queue(session: AsyncSession, key: str, name: str) -> None:
    """Create `key` with no rules of its own if it is missing (the `default` queue)."""
    await session.execute(
        insert(Queue)
        .values(
            key=key, name=name, config={"name": name}, created_at=func.now(), updated_at=func.now()
        )
        .on_conflict_do_nothing(index_elements=[Queue.key])
    )


# Read for every booking and most changes (a queue's rules), so built once.
_QUEUE = select(Queue).where(Queue.key == bindparam("key"))
_QUEUE_LOCKED = _QUEUE.with_for_update()


async def get_queue(session: AsyncSession, key: str, *, lock: bool = False) -> Queue | None:
    return await session.scalar(_QUEUE_LOCKED if lock else _QUEUE, {"key": key})


async def all_queues(session: AsyncSession) -> Sequence[Queue]:
    return (await session.scalars(select(Queue).order_by(Queue.key))).all()


async def queue_owning(session: AsyncSession, number: str) -> str | None:
    return await session.scalar(select(QueueNumber.queue).where(QueueNumber.number == number))


_QUEUES = cast(Table, Queue.__table__)


def _on_do_not_call(phone: str | BindParameter[str]) -> Exists:
    return select(DoNotCall.phone).where(DoNotCall.phone == phone).exists()


def _stored_answer() -> ScalarSelect[Any]:
    """The answer stored for `request_id` (null: none yet)."""
    return (
        select(CallbackRequest.result)
        .where(CallbackRequest.request_id == bindparam("request_id"))
        .scalar_subquery()
    )


def _choose_queue_statement(named: bool, dialed: bool, answered: bool) -> Select[Any]:
    """The first queue that exists of: the one `named`, the one owning the number `dialed`,
    `fallback`, as its row's columns; and the id of the open callback of `phone` in the
    queue chosen (`default` if none exists), locked for update (null: none, or no `phone`).

    `answered`: also the answer stored for `request_id` and whether `phone` is on the
    do-not-call list (a create asks them after its locks, as it asks the choice)."""
    candidates: list[ColumnElement[Any]] = []
    if named:
        candidates.append(bindparam("named", type_=Queue.key.type))
    if dialed:
        owner = select(QueueNumber.queue).where(QueueNumber.number == bindparam("dialed"))
        candidates.append(owner.scalar_subquery())
    fallback = bindparam("fallback", type_=Queue.key.type)
    candidates.append(fallback)
    rank = case(*((_QUEUES.c.key == c, i) for i, c in enumerate(candidates)))
    chosen = (select(*_QUEUES.c).where(_QUEUES.c.key.in_(candidates)).order_by(rank).limit(1)).cte(
        "chosen"
    )
    key = func.coalesce(select(chosen.c.key).scalar_subquery(), fallback)
    open_id = select(Callback.id).where(_open_in(key)).with_for_update().scalar_subquery()
    # One row whether or not a queue was found: the open callback's id is asked either way.
    one = select(literal_column("1").label("one")).subquery("one")
    columns: list[ColumnElement[Any]] = [*chosen.c, open_id.label("open_id")]
    if answered:
        answer = _stored_answer().label("answer")
        columns += [answer, _on_do_not_call(bindparam("phone")).label("on_do_not_call_list")]
    return select(*columns).select_from(one.outerjoin(chosen, true()))


# Built and compiled once per shape (see `_OPEN_FOR_PHONE_IN_QUEUE`).
_CHOOSE_QUEUE = {
    (named, dialed, answered): fast_sql.Statement.of(
        _choose_queue_statement(named, dialed, answered)
    )
    for named in (False, True)
    for dialed in (False, True)
    for answered in (False, True)
}


@dataclass(frozen=True, slots=True)
class QueueChoice:
    """What `choose_queue` read, in one statement."""

    # Detached from the session: for its rules, not to be changed (None: no queue exists).
    queue: Queue | None
    # The number's open callback in the queue chosen, row-locked (None: none, or no number).
    open_id: str | None
    # Asked with a `request_id` only: the answer stored for it, and the do-not-call list.
    answer: dict[str, Any] | None = None
    do_not_call: bool = False


async def choose_queue(
    session: AsyncSession,
    *,
    named: str | None,
    dialed: str | None,
    fallback: str,
    phone: str | None = None,
    request_id: str | None = None,
) -> QueueChoice:
    """The first queue that exists of: the one `named`, the one owning the number `dialed`,
    `fallback` (None if none does); the id of `phone`'s open callback in the queue chosen,
    locked for update; with `request_id`, the answer stored for it and whether `phone` is on
    the do-not-call list. One statement instead of a look-up per candidate, one more for
    the callback and one for the answer and the list."""
    params = {
        "named": named,
        "dialed": dialed,
        "fallback": fallback,
        "phone": phone,
        "request_id": request_id,
    }
    shape = (bool(named), bool(dialed), request_id is not None)
    row = await fast_sql.fetchrow(session, _CHOOSE_QUEUE[shape], params)
    assert row is not None  # one row always: the queue's columns are null when none exists
    queue = None
    if row["key"] is not None:
        queue = Queue(**{column.name: row[column.name] for column in _QUEUES.c})
    if request_id is None:
        return QueueChoice(queue, row["open_id"])
    return QueueChoice(queue, row["open_id"], row["answer"], bool(row["on_do_not_call_list"]))


async def set_queue_numbers(session: AsyncSession, key: str, numbers: Sequence[str]) -> None:
    await session.execute(delete(QueueNumber).where(QueueNumber.queue == key))
    if numbers:
        await session.execute(insert(QueueNumber), [{"number": n, "queue": key} for n in numbers])


async def get_agent(session: AsyncSession, agent_id: str, *, lock: bool = False) -> Agent | None:
    query = select(Agent).where(Agent.id == agent_id)
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


async def all_agents(session: AsyncSession) -> Sequence[Agent]:
    return (await session.scalars(select(Agent).order_by(Agent.id))).all()


async def open_in_queue(session: AsyncSession, key: str) -> int:
    query = select(func.count()).where(Callback.queue == key, Callback.status.in_(OPEN_STATUSES))
    return int(await session.scalar(query) or 0)


# ----------------------------------------------------------------------------- the agent queue


def _waiting() -> ColumnElement[bool]:
    return Callback.status.in_(WAITING_STATUSES)


def _lapsed(now: datetime) -> ColumnElement[bool]:
    """Claimed by an agent whose lease has run out: back in the queue for the next claim."""
    return and_(Callback.status == CallbackStatus.IN_PROGRESS, Callback.lease_expires_at <= now)


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Waiting with `due_at` passed, or claimed by an agent whose lease has run out."""
    return or_(and_(_waiting(), Callback.due_at <= now), _lapsed(now))


# The order claims take callbacks in, most urgent first (§9: priority, then `rank_at`).
_CLAIM_ORDER = (Callback.priority.desc(), Callback.rank_at, Callback.id)


def routed_to(
    *,
    agent_id: str,
    queues: Sequence[str] | None,
    languages: Sequence[str] | None,
    language_wait_minutes: int,
    now: datetime,
) -> ColumnElement[bool]:
    """What routing lets this agent take (§9); None for queues or languages means any.

    - only the agent's queues;
    - a language the agent speaks, or one nobody knew (`language_known` false), or any once
      the callback has been due for its queue's language wait;
    - a callback owned by another agent only after its `owner_until`.
    """
    owned_elsewhere = and_(
        Callback.owner_agent_id.is_not(None),
        Callback.owner_agent_id != agent_id,
        Callback.owner_until > now,
    )
    conditions: list[ColumnElement[bool]] = [~owned_elsewhere]
    if queues is not None:
        conditions.append(Callback.queue.in_(list(queues)))
    if languages is not None:
        wait = func.coalesce(
            select(Queue.language_wait_minutes)
            .where(Queue.key == Callback.queue)
            .scalar_subquery(),
            language_wait_minutes,
        )
        conditions.append(
            or_(
                Callback.language.in_(list(languages)),
                ~Callback.language_known,
                Callback.due_at + func.make_interval(0, 0, 0, 0, 0, wait) <= now,
            )
        )
    return and_(*conditions)


async def claim_next(
    session: AsyncSession, *, now: datetime, route: ColumnElement[bool]
) -> Callback | None:
    """The most urgent due callback `route` allows and nobody holds, locked; `SKIP LOCKED`
    keeps claimers apart. One statement, walking `ix_callbacks_queue` in claim order."""
    # Said outright so the planner sees the partial index's own predicate.
    claimable = and_(Callback.status.in_(OPEN_STATUSES), _claimable(now), route)
    first = select(Callback).where(claimable).order_by(*_CLAIM_ORDER).limit(1)
    callback = await session.scalar(first.with_for_update(skip_locked=True))
    if callback is not None:
        return callback
    # Nothing free. A due callback may be held for a moment by the worker (booking it, or
    # recording its confirmation) rather than by another claimer: wait for it briefly, so the
    # agent is not told "nothing is due" while one is. A plain read sees held rows.
    if await session.scalar(select(Callback.id).where(claimable).limit(1)) is None:
        return None
    try:
        async with session.begin_nested():
            await session.execute(text(f"SET LOCAL lock_timeout = '{CLAIM_WAIT_MS}ms'"))
            # A row claimed meanwhile fails the re-check and the next one is taken.
            callback = await session.scalar(first.with_for_update())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        return None
    finally:
        await session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return callback


# How long a claim waits for a due callback that a short transaction holds (the worker's).
CLAIM_WAIT_MS = 2000
_LOCK_NOT_AVAILABLE = "55P03"


# The last group is the claims being worked: callbacks `in_progress` whose lease still runs.
QueueGroup = Literal["overdue", "due", "later", CallbackStatus.IN_PROGRESS]
# The groups the queue view lists (it only counts the claims being worked).
ListedGroup = Literal["overdue", "due", "later"]


def queue_groups(now: datetime) -> dict[QueueGroup, ColumnElement[bool]]:
    """The agents' queue view in groups; each open callback falls in one group at most."""
    unheld = or_(_waiting(), _lapsed(now))
    within_sla = Callback.sla_deadline > now
    return {
        "overdue": and_(unheld, Callback.sla_deadline <= now),
        "due": and_(_claimable(now), within_sla),
        "later": and_(_waiting(), Callback.due_at > now, within_sla),
        CallbackStatus.IN_PROGRESS: and_(
            Callback.status == CallbackStatus.IN_PROGRESS, Callback.lease_expires_at > now
        ),
    }


_QUEUE_ORDERS: dict[ListedGroup, Sequence[Any]] = {
    # Oldest deadline first.
    "overdue": (Callback.sla_deadline, Callback.id),
    "due": _CLAIM_ORDER,
    "later": (Callback.due_at, Callback.id),
}


def _in_queues(queues: Sequence[str] | None) -> ColumnElement[bool]:
    return Callback.queue.in_(list(queues)) if queues is not None else true()


async def queue_totals(
    session: AsyncSession, *, now: datetime, queues: Sequence[str] | None = None
) -> dict[QueueGroup, int]:
    """How many open callbacks are in each group of the queue view, in one statement."""
    groups = queue_groups(now)
    totals = (
        await session.execute(
            select(*(func.count().filter(cond).label(name) for name, cond in groups.items()))
            .select_from(Callback)
            .where(Callback.status.in_(OPEN_STATUSES), _in_queues(queues))
        )
    ).one()
    return {name: int(totals[i]) for i, name in enumerate(groups)}


async def queue_group(
    session: AsyncSession,
    *,
    group: ListedGroup,
    now: datetime,
    limit: int,
    queues: Sequence[str] | None = None,
) -> Sequence[Callback]:
    """The first `limit` callbacks of one group of the queue view, in its order."""
    return (
        await session.scalars(
            select(Callback)
            .where(Callback.status.in_(OPEN_STATUSES), queue_groups(now)[group], _in_queues(queues))
            .order_by(*_QUEUE_ORDERS[group])
            .limit(limit)
        )
    ).all()


async def lapsed_leases(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[Callback]:
    return (
        await session.scalars(
            select(Callback)
            .where(_lapsed(now))
            .order_by(Callback.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def past_deadline(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[Callback]:
    """Waiting callbacks nobody worked before their deadline (a chosen slot counts as one)."""
    deadline = func.greatest(
        Callback.sla_deadline, func.coalesce(Callback.slot_end, Callback.sla_deadline)
    )
    return (
        await session.scalars(
            select(Callback)
            .where(
                _waiting(),
                Callback.attempt_count == 0,
                Callback.sla_deadline <= now,
                deadline <= now,
            )
            .order_by(Callback.sla_deadline)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def owed_confirmations(
    session: AsyncSession, *, older_than: datetime, limit: int
) -> Sequence[str]:
    """Callbacks whose `book_and_confirm` job should have run by now."""
    return (
        await session.scalars(
            select(Callback.id)
            .where(Callback.confirm_key.is_not(None), Callback.updated_at <= older_than)
            .order_by(Callback.updated_at)
            .limit(limit)
        )
    ).all()


async def next_attempt_number(session: AsyncSession, callback_id: str) -> int:
    current = await session.scalar(
        select(func.coalesce(func.max(Attempt.number), 0)).where(Attempt.callback_id == callback_id)
    )
    return int(current or 0) + 1


# ----------------------------------------------------------------------------- small registries


async def tries_made(session: AsyncSession, callback_id: str) -> int:
    """Final attempts so far that count toward `max_tries` (a rescheduling does not)."""
    query = select(func.count()).where(
        Attempt.callback_id == callback_id,
        Attempt.outcome != AttemptOutcome.RESCHEDULED,
        Attempt.final,
    )
    return int(await session.scalar(query) or 0)


async def dials_of(session: AsyncSession, callback_id: str, limit: int = 50) -> list[Dial]:
    """A callback's dials, newest first."""
    query = (
        select(Dial)
        .where(Dial.callback_id == callback_id)
        .order_by(Dial.created_at.desc(), Dial.id.desc())
        .limit(limit)
    )
    return list(await session.scalars(query))


async def open_proposal(session: AsyncSession, callback_id: str) -> Attempt | None:
    """The line's proposed attempt still waiting for the agent's word, if any (§10)."""
    query = select(Attempt).where(Attempt.callback_id == callback_id, ~Attempt.final)
    return (await session.scalars(query.limit(1))).first()


async def last_conversation_agent(session: AsyncSession, callback_id: str) -> str | None:
    """The agent of the latest try in which the customer was spoken with (a rescheduling)."""
    query = (
        select(Attempt.agent_id)
        .where(Attempt.callback_id == callback_id, Attempt.outcome == AttemptOutcome.RESCHEDULED)
        .order_by(Attempt.number.desc())
        .limit(1)
    )
    return await session.scalar(query)


_RECORD_ANSWER = fast_sql.Statement.of(
    insert(CallbackRequest).values(
        request_id=bindparam("request_id"),
        callback_id=bindparam("callback_id"),
        status_code=bindparam("status_code"),
        result=bindparam("result"),
        created_at=bindparam("created_at"),
    )
)


async def record_answer(
    session: AsyncSession,
    *,
    request_id: str,
    callback_id: str | None,
    status_code: int,
    result: dict[str, Any],
    now: datetime,
) -> None:
    """Store a create's answer under its `request_id`, for a repeat to get it back: in the
    create's transaction, after its callback is written (the answer names it)."""
    params = {
        "request_id": request_id,
        "callback_id": callback_id,
        "status_code": status_code,
        "result": result,
        "created_at": now,
    }
    await fast_sql.fetch(session, _RECORD_ANSWER, params)


async def is_do_not_call(session: AsyncSession, phone: str) -> bool:
    return bool(await session.scalar(select(_on_do_not_call(phone))))


async def add_do_not_call(session: AsyncSession, phone: str, now: datetime) -> bool:
    """Add `phone`; False if it was there already."""
    result = await session.execute(
        insert(DoNotCall)
        .values(phone=phone, created_at=now)
        .on_conflict_do_nothing()
        .returning(DoNotCall.phone)
    )
    return result.first() is not None


async def remove_do_not_call(session: AsyncSession, phone: str) -> bool:
    result = await session.execute(
        delete(DoNotCall).where(DoNotCall.phone == phone).returning(DoNotCall.phone)
    )
    return result.first() is not None


async def get_processed(session: AsyncSession, kind: str, key: str) -> ProcessedRequest | None:
    return await session.get(ProcessedRequest, (kind, key))


# ----------------------------------------------------------------------------- erasure


async def callbacks_of(
    session: AsyncSession, *, phones: Iterable[str], emails: Iterable[str]
) -> Sequence[Callback]:
    phones, emails = list(phones), list(emails)
    conditions = []
    if phones:
        conditions.append(Callback.phone.in_(phones))
    if emails:
        conditions.append(Callback.email.in_(emails))
    if not conditions:
        return []
    return (
        await session.scalars(
            select(Callback).where(or_(*conditions)).order_by(Callback.id).with_for_update()
        )
    ).all()


async def callbacks_with_unverified_email(
    session: AsyncSession, emails: Sequence[str]
) -> Sequence[Callback]:
    if not emails:
        return []
    query = select(Callback).where(Callback.unverified_email.in_(emails))
    return (await session.scalars(query.order_by(Callback.id).with_for_update())).all()


async def erase_notifications(
    session: AsyncSession, *, callback_ids: Sequence[str], recipients: Sequence[str]
) -> int:
    """Blank recipient and text of these callbacks' messages (and of loose ones to them)."""
    conditions = []
    if callback_ids:
        conditions.append(Notification.callback_id.in_(callback_ids))
    if recipients:
        conditions.append(Notification.recipient.in_(recipients))
    if not conditions:
        return 0
    result = await session.execute(
        update(Notification)
        .where(or_(*conditions))
        .values(
            recipient=ERASED_RECIPIENT,
            subject=None,
            body="",
            last_error=None,
            # Nothing left to send to someone who asked to be forgotten.
            status=case(
                (
                    Notification.status.in_(UNFINISHED_NOTIFICATION_STATUSES),
                    NotificationStatus.CANCELLED,
                ),
                else_=Notification.status,
            ),
            updated_at=func.now(),
        )
        .returning(Notification.id)
    )
    return len(result.all())


async def erase_attempt_notes(session: AsyncSession, callback_ids: Sequence[str]) -> int:
    if not callback_ids:
        return 0
    result = await session.execute(
        update(Attempt)
        .where(Attempt.callback_id.in_(callback_ids), Attempt.note.is_not(None))
        .values(note=None)
        .returning(Attempt.id)
    )
    return len(result.all())


async def outbox_rows_for(
    session: AsyncSession, *, keys: Sequence[str], phones: Sequence[str], emails: Sequence[str]
) -> Sequence[CallbackOutbox]:
    """Outbox rows that name one of these identities (by ordering key or in the payload)."""
    conditions = []
    if keys:
        conditions.append(CallbackOutbox.ordering_key.in_(keys))
    for phone in phones:
        conditions.append(CallbackOutbox.payload["customer"]["phone"].astext == phone)
    for email in emails:
        conditions.append(CallbackOutbox.payload["customer"]["email"].astext == email)
    if not conditions:
        return []
    return (
        await session.scalars(select(CallbackOutbox).where(or_(*conditions)).with_for_update())
    ).all()


async def list_callbacks(
    session: AsyncSession,
    *,
    status: str | None,
    phone: str | None,
    agent_id: str | None = None,
    queue: str | None = None,
    due_before: datetime | None,
    after_id: str | None,
    limit: int,
) -> Sequence[Callback]:
    """Newest first (ids are UUIDv7, so id order is creation order), one page past `after_id`."""
    query = select(Callback)
    if status is not None:
        query = query.where(Callback.status == status)
    if phone is not None:
        query = query.where(Callback.phone == phone)
    if agent_id is not None:
        query = query.where(Callback.agent_id == agent_id)
    if queue is not None:
        query = query.where(Callback.queue == queue)
    if due_before is not None:
        query = query.where(Callback.due_at < due_before)
    if after_id is not None:
        query = query.where(Callback.id < after_id)
    return (await session.scalars(query.order_by(Callback.id.desc()).limit(limit))).all()


async def lock_notification(session: AsyncSession, notification_id: str) -> Notification | None:
    """The notification row, locked until commit, so two jobs never both claim it."""
    return await session.scalar(
        select(Notification).where(Notification.id == notification_id).with_for_update()
    )


# The worker's hot path, as plain Core statements built once: a job's common case is then one
# statement to claim and one to record, without loading or flushing ORM objects.
_notifications = cast(Table, Notification.__table__)
_callbacks = cast(Table, Callback.__table__)


# Every column a new notification row is written with (`notify._row` sets them); the rest
# (the send's error, the provider's id, when it went) start empty.
_NEW_NOTIFICATION_COLUMNS = (
    "id",
    "callback_id",
    "kind",
    "event_key",
    "channel",
    "provider",
    "status",
    "recipient",
    "subject",
    "body",
    "attempts",
    "max_attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


@cache
def _insert_notifications() -> fast_sql.Statement:
    """New notification rows from one array per column: any number in one statement,
    compiled once, where the ORM's flush went through its unit of work for each."""
    new = (
        func.unnest(
            *(
                bindparam(f"new_{name}", type_=ARRAY(_notifications.c[name].type))
                for name in _NEW_NOTIFICATION_COLUMNS
            )
        )
        .table_valued(*_NEW_NOTIFICATION_COLUMNS)
        .render_derived(name="new_notification")
    )
    statement = insert(_notifications).from_select(
        list(_NEW_NOTIFICATION_COLUMNS), select(*(new.c[n] for n in _NEW_NOTIFICATION_COLUMNS))
    )
    return fast_sql.Statement.of(statement)


async def add_notifications(session: AsyncSession, rows: Sequence[Notification]) -> None:
    """Write new notification rows (made by `notify._row`, not added to the session) now,
    in the session's transaction: later statements of the transaction see them. A row's
    callback must be written already (the foreign key is checked at once)."""
    if not rows:
        return
    now = utcnow()
    for row in rows:
        row.created_at = row.created_at or now
        row.updated_at = row.updated_at or now
    params = {
        f"new_{name}": [getattr(row, name) for row in rows] for name in _NEW_NOTIFICATION_COLUMNS
    }
    await fast_sql.fetch(session, _insert_notifications(), params)


_CLAIMED = (
    update(_notifications)
    .where(
        # Any number of sends in one statement: the worker's concurrent jobs claim together
        # (`tasks.WorkerState.claims`).
        _notifications.c.id == func.any(bindparam("notification_ids", type_=ARRAY(Text))),
        send_rule.due_condition(_notifications, _callbacks, due_by=bindparam("due_by")),
    )
    .values(
        status=NotificationStatus.SENDING,
        attempts=_notifications.c.attempts + 1,
        provider=case(
            (_notifications.c.channel == NotificationChannel.SMS, bindparam("sms_provider")),
            else_=bindparam("email_provider"),
        ),
        next_attempt_at=bindparam("lease_until"),
        updated_at=bindparam("now"),
    )
    .returning(
        _notifications.c.id,
        _notifications.c.kind,
        _notifications.c.channel,
        _notifications.c.recipient,
        _notifications.c.subject,
        _notifications.c.body,
        _notifications.c.attempts,
        _notifications.c.callback_id,
    )
    .cte("claimed")
)
# The callback's fields come with the claim: the event of the send's result is made from them
# and written with the result in one statement (`_MARK_SENT_AND_TELL`). An erasure meanwhile
# cancels the send, so no result (nor event) of it is written.
_CLAIM_DUE = select(
    _CLAIMED,
    _callbacks.c.phone,
    _callbacks.c.language,
    _callbacks.c.email,
    _callbacks.c.name,
).select_from(_CLAIMED.outerjoin(_callbacks, _callbacks.c.id == _CLAIMED.c.callback_id))
_FAST_CLAIM_DUE = fast_sql.Statement.of(_CLAIM_DUE)


# The sends to mark, one array per field; `n` is each one's position, which names its event.
_SENT = (
    func.unnest(
        bindparam("sent_ids", type_=ARRAY(Text)),
        bindparam("sent_attempts", type_=ARRAY(Integer)),
        bindparam("sent_message_ids", type_=ARRAY(Text)),
    )
    .table_valued("id", "attempt", "message_id", with_ordinality="n")
    .render_derived(name="result")
)
_MARKED_SENT = (
    update(_notifications)
    .where(
        _notifications.c.id == _SENT.c.id,
        _notifications.c.status == NotificationStatus.SENDING,
        _notifications.c.attempts == _SENT.c.attempt,
    )
    .values(
        status=NotificationStatus.SENT,
        sent_at=bindparam("now"),
        updated_at=bindparam("now"),
        provider_message_id=_SENT.c.message_id,
        last_error=None,
    )
    .returning(
        _notifications.c.id,
        _notifications.c.callback_id,
        _notifications.c.kind,
        _notifications.c.channel,
        _notifications.c.recipient,
        _notifications.c.attempts,
        _notifications.c.provider,
        _SENT.c.n,
    )
    .cte("sent")
)
# `sent`, and the event of each send marked (`events.message_result_row`, at the same
# position) with one NOTIFY, in one statement: in autocommit one round trip where a
# transaction of its own took four, for any number of sends.
_MARK_SENT_AND_TELL: Select[Any] = select(
    _MARKED_SENT.c.id,
    _MARKED_SENT.c.channel,
    _MARKED_SENT.c.provider,
    notify_once(
        CallbackOutbox,
        insert_rows(CallbackOutbox, positions=select(_MARKED_SENT.c.n)).cte("new_rows"),
    )
    .scalar_subquery()
    .label("notified"),
)
_FAST_MARK_SENT_AND_TELL = fast_sql.Statement.of(_MARK_SENT_AND_TELL)


async def add_outbox_row(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert one outbox row (`shared.outbox.row_values`) and NOTIFY, in one statement."""
    await add_rows(session, CallbackOutbox, [values])


async def claim_due_notifications(
    conn: AsyncConnection,
    notification_ids: Sequence[str],
    *,
    now: datetime,
    due_by: datetime,
    lease_until: datetime,
    sms_provider: str,
    email_provider: str,
) -> dict[str, Record]:
    """Take the sends of plainly due notifications in one statement: checked and marked together.

    Run it in autocommit: the rows are `sending` and committed when this returns. The row locks
    make a race safe (the loser re-checks a row as it now is, and matches nothing). An id
    missing from the answer is missing, done, not due, held or out of tries:
    `lock_notification` tells.
    """
    rows = await fast_sql.run(
        conn,
        _FAST_CLAIM_DUE,
        {
            "notification_ids": list(notification_ids),
            "due_by": due_by,
            "lease_until": lease_until,
            "now": now,
            "sms_provider": sms_provider,
            "email_provider": email_provider,
        },
    )
    return {row["id"]: row for row in rows}


@dataclass(frozen=True, slots=True)
class SentResult:
    """A send to mark `sent`: the attempt that made it, the provider's id, and its event."""

    notification_id: str
    attempt: int
    message_id: str | None
    event: dict[str, Any]


async def mark_notifications_sent(
    db: AsyncConnection | AsyncSession, results: Sequence[SentResult], *, now: datetime
) -> dict[str, Record]:
    """`sending` → `sent` for each send whose attempt still holds it, with its `event` (an
    outbox row) written with it; neither for the others. Keyed by notification id.

    An id missing from the answer: its lease ran out and another job took the send over (or
    an erasure cancelled it).
    """
    if not results:
        return {}
    params = {
        "sent_ids": [result.notification_id for result in results],
        "sent_attempts": [result.attempt for result in results],
        "sent_message_ids": [result.message_id for result in results],
        "now": now,
        **rows_params(CallbackOutbox, [result.event for result in results]),
    }
    if isinstance(db, AsyncSession):
        rows = await fast_sql.fetch(db, _FAST_MARK_SENT_AND_TELL, params)
    else:
        rows = await fast_sql.run(db, _FAST_MARK_SENT_AND_TELL, params)
    return {row["id"]: row for row in rows}


async def due_notifications(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[str]:
    """Ids of notifications whose send (or expired send lease) is due."""
    return (
        await session.scalars(
            select(Notification.id)
            .where(
                Notification.status.in_(UNFINISHED_NOTIFICATION_STATUSES),
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at)
            .limit(limit)
        )
    ).all()


async def notifications_for(session: AsyncSession, callback_id: str) -> Sequence[Notification]:
    return (
        await session.scalars(
            select(Notification)
            .where(Notification.callback_id == callback_id)
            .order_by(Notification.id)
        )
    ).all()


async def list_notifications(
    session: AsyncSession, *, status: str | None, after_id: str | None, limit: int
) -> Sequence[Notification]:
    """Oldest first, one page past `after_id`."""
    query = select(Notification)
    if status is not None:
        query = query.where(Notification.status == status)
    if after_id is not None:
        query = query.where(Notification.id > after_id)
    return (await session.scalars(query.order_by(Notification.id).limit(limit))).all()


@cache
def _keys_used_and_do_not_call(keys: int, locks: int) -> Select[Any]:
    """Which of `keys` event keys (`key0`, `key1`...) were written already, whether `phone`
    is on the do-not-call list, and then `locks` advisory locks (`lock0`, `lock1`...) in that
    order: evaluated after the questions, so the caller's next statement (the ceilings'
    counts) sees everything committed before they were held. One bound parameter per key:
    an array parameter (`= ANY`) cost 20% more per round trip, measured."""
    used = (
        select(func.array_agg(Notification.event_key))
        .where(Notification.event_key.in_([bindparam(f"key{i}") for i in range(keys)]))
        .scalar_subquery()
    )
    taken = [func.pg_advisory_xact_lock(bindparam(f"lock{i}")) for i in range(locks)]
    return select(used, _on_do_not_call(bindparam("phone")), *taken)


async def keys_used_and_do_not_call(
    session: AsyncSession,
    event_keys: Sequence[str],
    phone: str,
    *,
    locks: Sequence[tuple[str, str]] = (),
) -> tuple[set[str], bool]:
    """Which messages of `event_keys` were written already, and whether `phone` is on the
    do-not-call list: the first questions of the messages a change owes, in one round trip.

    `locks`: (namespace, value)s the caller is about to `lock` (the ceilings'), in this
    order, taken in the same round trip but for those the transaction holds already."""
    held = _held_locks(session)
    keys = [key for key in (_lock_key(*lock) for lock in locks) if key not in held]
    params: dict[str, Any] = {"phone": phone}
    params.update({f"key{i}": event_key for i, event_key in enumerate(event_keys)})
    params.update({f"lock{i}": key for i, key in enumerate(keys)})
    statement = fast_sql.compiled(_keys_used_and_do_not_call(len(event_keys), len(keys)))
    row = await fast_sql.fetchrow(session, statement, params)
    assert row is not None  # a SELECT without FROM has its one row
    if keys:
        _remember_locks(session, keys)
    return set(row[0] or ()), bool(row[1])


async def notifications_by_key(session: AsyncSession, event_key: str) -> Sequence[Notification]:
    return (
        await session.scalars(select(Notification).where(Notification.event_key == event_key))
    ).all()


# ----------------------------------------------------------------------------- ceilings


def _messages_to(
    channel: str | BindParameter[str],
    recipient: str | BindParameter[str],
    since: datetime | BindParameter[datetime],
) -> Select[Any]:
    """The ceilings' count: messages on `channel` written for `recipient` since `since`,
    cancelled ones aside."""
    return (
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.recipient == recipient,
            Notification.created_at > since,
            Notification.channel == channel,
            Notification.status != NotificationStatus.CANCELLED,
        )
    )


# Asked for every message written (the ceilings), so built once.
_MESSAGES_TO = _messages_to(bindparam("channel"), bindparam("recipient"), bindparam("since"))
_MESSAGES_OF = (
    select(func.count())
    .select_from(Notification)
    .where(
        Notification.callback_id == bindparam("callback_id"),
        Notification.channel == bindparam("channel"),
        Notification.kind.in_(bindparam("kinds", expanding=True)),
        Notification.created_at > bindparam("since"),
    )
)


async def count_messages_to(
    session: AsyncSession, *, channel: str, recipient: str, since: datetime
) -> int:
    """Messages on `channel` written for `recipient` since then, cancelled ones aside."""
    params = {"recipient": recipient, "since": since, "channel": channel}
    return int(await session.scalar(_MESSAGES_TO, params) or 0)


@cache
def _messages_to_each(count: int) -> Select[Any]:
    since: BindParameter[datetime] = bindparam("since")
    return select(
        *(
            _messages_to(
                bindparam(f"channel{i}"), bindparam(f"recipient{i}"), since
            ).scalar_subquery()
            for i in range(count)
        )
    )


async def count_messages_to_each(
    session: AsyncSession, recipients: Sequence[tuple[str, str]], *, since: datetime
) -> dict[tuple[str, str], int]:
    """`count_messages_to` for each (channel, recipient), in one round trip."""
    if not recipients:
        return {}
    params: dict[str, Any] = {"since": since}
    for i, (channel, recipient) in enumerate(recipients):
        params[f"channel{i}"], params[f"recipient{i}"] = channel, recipient
    statement = fast_sql.compiled(_messages_to_each(len(recipients)))
    row = await fast_sql.fetchrow(session, statement, params)
    assert row is not None  # a SELECT without FROM has its one row
    return {pair: int(found) for pair, found in zip(recipients, row, strict=True)}


async def count_messages_of(
    session: AsyncSession,
    *,
    callback_id: str,
    channel: str,
    kinds: Sequence[NotificationKind],
    since: datetime,
) -> int:
    params = {"callback_id": callback_id, "channel": channel, "kinds": list(kinds), "since": since}
    return int(await session.scalar(_MESSAGES_OF, params) or 0)


async def count_self_service_changes(
    session: AsyncSession,
    *,
    action: str,
    since: datetime,
    callback_id: str | None = None,
    phone: str | None = None,
) -> int:
    """Changes made through self-service links since then, of one callback or one number."""
    query = (
        select(func.count())
        .select_from(SelfServiceChange)
        .where(SelfServiceChange.created_at > since, SelfServiceChange.action == action)
    )
    if callback_id is not None:
        query = query.where(SelfServiceChange.callback_id == callback_id)
    if phone is not None:
        query = query.join(Callback, Callback.id == SelfServiceChange.callback_id).where(
            Callback.phone == phone
        )
    return int(await session.scalar(query) or 0)


async def cancel_notifications(
    session: AsyncSession, *, callback_id: str, kinds: Sequence[NotificationKind]
) -> int:
    """Cancel this callback's unsent messages of these kinds (reminders for a slot it left)."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.callback_id == callback_id,
            Notification.kind.in_(kinds),
            Notification.status.in_(send_rule.STARTABLE),
        )
        .values(status=NotificationStatus.CANCELLED, updated_at=func.now())
        .returning(Notification.id)
    )
    return len(result.all())


# ----------------------------------------------------------------------------- staffing (§14)


async def mean_dialed_handle_seconds(
    session: AsyncSession, *, queue: str, since: datetime
) -> float | None:
    """The mean time from a dial's start until its attempt became final, in `queue` since
    `since`; None without one (an attempt typed in by hand has no start to measure from)."""
    ended = func.coalesce(Attempt.finalized_at, Attempt.created_at)
    mean = await session.scalar(
        select(func.avg(func.extract("epoch", ended - Dial.created_at)))
        .select_from(Attempt)
        .join(Dial, Dial.id == Attempt.dial_id)
        .join(Callback, Callback.id == Attempt.callback_id)
        .where(
            Callback.queue == queue,
            Attempt.final,
            Attempt.created_at >= since,
            ended > Dial.created_at,
        )
    )
    return float(mean) if mean is not None else None


async def demand_moments(
    session: AsyncSession, *, queue: str, since: datetime, until: datetime
) -> list[datetime]:
    """When work arose in `queue` in `[since, until)`: each callback at its first contact (in
    its slot, when the customer chose one), and each retry when it fell due."""
    moment = case(
        (and_(Callback.asap.is_(False), Callback.slot_start.is_not(None)), Callback.slot_start),
        else_=Callback.first_contact_at,
    )
    new = select(moment).where(Callback.queue == queue, moment >= since, moment < until)
    retries = (
        select(Attempt.next_attempt_at)
        .join(Callback, Callback.id == Attempt.callback_id)
        .where(
            Callback.queue == queue,
            Attempt.next_attempt_at >= since,
            Attempt.next_attempt_at < until,
        )
    )
    rows = (await session.execute(new.union_all(retries))).scalars().all()
    return [m for m in rows if m is not None]


async def first_contact_in(session: AsyncSession, queue: str) -> datetime | None:
    found: datetime | None = await session.scalar(
        select(func.min(Callback.first_contact_at)).where(Callback.queue == queue)
    )
    return found


async def agents_serving(session: AsyncSession, queue: str) -> list[tuple[int, str]]:
    """(how many queues each serves, presence) of the roster's agents in `queue`."""
    rows = (await session.execute(select(Agent.queues, Agent.presence))).all()
    return [(len(queues), presence) for queues, presence in rows if queue in queues]


async def waiting_in_rank_order(
    session: AsyncSession, queue: str, *, limit: int | None = None
) -> Sequence[Row[str, datetime, datetime]]:
    """(id, due_at, promised_by) of the queue's waiting callbacks in the claim's order (the
    first `limit` of them: the phone-queue offer needs only those ahead of the caller)."""
    return (
        await session.execute(
            select(Callback.id, Callback.due_at, promised_by_sql())
            .where(Callback.queue == queue, Callback.status.in_(WAITING_STATUSES))
            .order_by(Callback.priority.desc(), Callback.rank_at, Callback.id)
            .limit(limit)
        )
    ).all()


async def promise_marks(
    session: AsyncSession, queue: str
) -> Sequence[Row[str, datetime, bool, datetime | None, datetime | None, datetime | None]]:
    return (
        await session.execute(
            select(
                PromiseMark.callback_id,
                PromiseMark.promised_by,
                PromiseMark.at_risk,
                PromiseMark.at_risk_at,
                PromiseMark.recovered_at,
                PromiseMark.offered_at,
            ).where(PromiseMark.queue == queue)
        )
    ).all()


async def write_promise_marks(
    session: AsyncSession,
    *,
    queue: str,
    new: list[dict[str, Any]],
    changed: list[dict[str, Any]],
    gone: list[str],
    now: datetime,
) -> None:
    """Add and change marks in bulk; `gone` (claimed, moved, closed) are no longer at risk;
    the marks of closed callbacks go."""
    if new:
        await session.execute(insert(PromiseMark), new)
    if changed:
        await session.execute(update(PromiseMark), changed)
    if gone:
        await session.execute(
            update(PromiseMark)
            .where(PromiseMark.callback_id.in_(gone))
            .values(at_risk=False, updated_at=now)
        )
    await session.execute(
        delete(PromiseMark).where(
            PromiseMark.queue == queue,
            PromiseMark.callback_id.in_(
                select(Callback.id).where(
                    Callback.id == PromiseMark.callback_id, Callback.status.not_in(OPEN_STATUSES)
                )
            ),
        )
    )


async def mark_offered(session: AsyncSession, callback_ids: Sequence[str], now: datetime) -> None:
    await session.execute(
        update(PromiseMark).where(PromiseMark.callback_id.in_(callback_ids)).values(offered_at=now)
    )


async def callbacks_by_id(
    session: AsyncSession, callback_ids: Sequence[str]
) -> dict[str, Callback]:
    rows = await session.execute(select(Callback).where(Callback.id.in_(callback_ids)))
    return {c.id: c for c in rows.scalars()}


# ----------------------------------------------------------------------------- dials (§10)


async def running_dial(session: AsyncSession, callback_id: str) -> Dial | None:
    query = select(Dial).where(
        Dial.callback_id == callback_id, Dial.status.in_(RUNNING_DIAL_STATUSES)
    )
    return (await session.scalars(query.limit(1))).first()


async def lock_dial(session: AsyncSession, dial_id: str) -> Dial | None:
    return await session.scalar(
        select(Dial)
        .where(Dial.id == dial_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def callback_of_dial(session: AsyncSession, dial_id: str) -> str | None:
    return await session.scalar(select(Dial.callback_id).where(Dial.id == dial_id))


async def previous_line_result(session: AsyncSession, callback_id: str, dial_id: str) -> str | None:
    """How the callback's dial before `dial_id` ended on the customer's line, if it reached it."""
    query = (
        select(Dial.line_result)
        .where(
            Dial.callback_id == callback_id,
            Dial.id != dial_id,
            Dial.line_result.is_not(None),
            Dial.line_result != LineResult.AGENT_NOT_CONNECTED,
        )
        .order_by(Dial.created_at.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def unplaced_dials(session: AsyncSession, *, older_than: datetime) -> list[str]:
    """Dials stored but never asked for (their job was lost): safe to place again."""
    query = select(Dial.id).where(Dial.status == DialStatus.INITIATED, Dial.updated_at < older_than)
    return list(await session.scalars(query.limit(500)))


async def dials_in(
    session: AsyncSession, statuses: Sequence[str], *, older_than: datetime
) -> Sequence[Dial]:
    """Dials in `statuses` unchanged since `older_than`, locked (others skip them)."""
    query = (
        select(Dial)
        .where(Dial.status.in_(list(statuses)), Dial.updated_at < older_than)
        .with_for_update(skip_locked=True)
        .limit(500)
    )
    return (await session.scalars(query)).all()


async def calls_outlasting_leases(session: AsyncSession, *, lease: datetime) -> Sequence[Callback]:
    """Claimed callbacks whose lease ends before `lease` while their agent's dial runs."""
    running = (
        select(Dial.id)
        .where(
            Dial.callback_id == Callback.id,
            Dial.agent_id == Callback.agent_id,
            Dial.status.in_(RUNNING_DIAL_STATUSES),
        )
        .exists()
    )
    query = (
        select(Callback)
        .where(
            Callback.status == CallbackStatus.IN_PROGRESS,
            Callback.lease_expires_at < lease,
            running,
        )
        .with_for_update(skip_locked=True)
        .limit(500)
    )
    return (await session.scalars(query)).all()


async def lock_attempt(session: AsyncSession, callback_id: str, attempt_id: str) -> Attempt | None:
    return await session.scalar(
        select(Attempt)
        .where(Attempt.id == attempt_id, Attempt.callback_id == callback_id)
        .with_for_update()
    )


async def callback_of_proposal(session: AsyncSession, attempt_id: str) -> str | None:
    """The callback of a proposed (not yet final) attempt."""
    return await session.scalar(
        select(Attempt.callback_id).where(Attempt.id == attempt_id, ~Attempt.final)
    )


async def proposals_due(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[str]:
    """Proposed attempts whose wrap-up time is over."""
    query = select(Attempt.id).where(~Attempt.final, Attempt.finalize_at <= now).limit(limit)
    return list(await session.scalars(query))


async def ranked_ahead(
    session: AsyncSession, queue: str, *, priority: int, rank_at: datetime
) -> tuple[int, int, tuple[datetime | None, float | None]]:
    """(ahead, waiting, version): the waiting callbacks a new one of `priority` ranked at
    `rank_at` would come after, all the queue's waiting callbacks (§11), and what changes
    when those ahead change (the latest change among the waiting, the sum of the due times
    ahead), for a cache of the simulation over them."""
    ahead = (Callback.priority > priority) | (
        (Callback.priority == priority) & (Callback.rank_at <= rank_at)
    )
    row = (
        await session.execute(
            select(
                func.count().filter(ahead),
                func.count(),
                func.max(Callback.updated_at),
                func.sum(func.extract("epoch", Callback.due_at)).filter(ahead),
            )
            .select_from(Callback)
            .where(Callback.queue == queue, Callback.status.in_(WAITING_STATUSES))
        )
    ).one()
    return int(row[0]), int(row[1]), (row[2], None if row[3] is None else float(row[3]))


# ----------------------------------------------------------------------------- wallboard (§13)


async def wallboard_waiting(
    session: AsyncSession, key: str, *, now: datetime, due_soon: timedelta
) -> tuple[int, int, int, datetime | None]:
    """Waiting, overdue, due within `due_soon`, and the first contact of the longest waiting,
    in the queue view's own groups, so "overdue" means the same on both."""
    groups = queue_groups(now)
    unheld = or_(groups["overdue"], groups["due"], groups["later"])
    to_work = or_(groups["overdue"], groups["due"])
    row = (
        await session.execute(
            select(
                func.count().filter(unheld),
                func.count().filter(groups["overdue"]),
                func.count().filter(
                    and_(
                        unheld,
                        Callback.sla_deadline > now,
                        Callback.sla_deadline <= now + due_soon,
                    )
                ),
                func.min(Callback.first_contact_at).filter(to_work),
            ).where(Callback.queue == key, Callback.status.in_(OPEN_STATUSES))
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2]), row[3]


async def wallboard_roster_and_claims(
    session: AsyncSession, key: str, *, now: datetime
) -> tuple[list[tuple[str, str]], list[tuple[str | None, str]]]:
    """The queue's rostered agents with their presence, and every live claim (agent, queue)."""
    roster = (
        await session.execute(select(Agent.id, Agent.presence).where(Agent.queues.contains([key])))
    ).all()
    claims = (
        await session.execute(
            select(Callback.agent_id, Callback.queue).where(
                queue_groups(now)[CallbackStatus.IN_PROGRESS]
            )
        )
    ).all()
    return [(a, p) for a, p in roster], [(a, q) for a, q in claims]


async def wallboard_sla(
    session: AsyncSession,
    key: str,
    *,
    since: datetime,
    now: datetime,
    closed: Sequence[str],
    reached: Sequence[str],
) -> tuple[int, int]:
    """Callbacks of the queue closed in [since, now], and how many of them were reached in time."""
    reached_in_time = and_(
        Callback.status == CallbackStatus.COMPLETED,
        Callback.outcome.in_(list(reached)),
        Callback.closed_at <= Callback.sla_deadline,
    )
    row = (
        await session.execute(
            select(func.count(), func.count().filter(reached_in_time)).where(
                Callback.queue == key,
                Callback.status.in_(list(closed)),
                Callback.closed_at >= since,
                Callback.closed_at <= now,
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def wallboard_csat(
    session: AsyncSession, key: str, *, since: datetime, now: datetime
) -> tuple[int, float | None]:
    """The queue's surveys answered in [since, now]: how many, and their mean score."""
    row = (
        await session.execute(
            select(func.count(), func.avg(Survey.score)).where(
                Survey.queue == key,
                Survey.score.is_not(None),
                Survey.answered_at >= since,
                Survey.answered_at <= now,
            )
        )
    ).one()
    return int(row[0]), float(row[1]) if row[1] is not None else None


async def wallboard_at_risk(session: AsyncSession, key: str) -> int:
    """Open callbacks of the queue marked at risk (§14)."""
    count = await session.scalar(
        select(func.count())
        .select_from(PromiseMark)
        .join(Callback, Callback.id == PromiseMark.callback_id)
        .where(PromiseMark.queue == key, PromiseMark.at_risk, Callback.status.in_(OPEN_STATUSES))
    )
    return int(count or 0)


# ----------------------------------------------------------------------------- surveys (§13)

# A survey that counts toward one per customer per 30 days: one that went, or is going.
_SURVEY_COUNTED = (SurveyStatus.SCHEDULED, SurveyStatus.SENT, SurveyStatus.ANSWERED)


async def surveys_to_since(session: AsyncSession, *, phone: str, since: datetime) -> int:
    """Surveys for `phone` made since then, withdrawn ones aside."""
    found = await session.scalar(
        select(func.count())
        .select_from(Survey)
        .where(
            Survey.phone == phone,
            Survey.created_at >= since,
            Survey.status.in_(_SURVEY_COUNTED),
        )
    )
    return int(found or 0)


async def survey_of_callback(session: AsyncSession, callback_id: str) -> Survey | None:
    return await session.scalar(select(Survey).where(Survey.callback_id == callback_id))


async def lock_survey_by_notification(session: AsyncSession, notification_id: str) -> Survey | None:
    return await session.scalar(
        select(Survey).where(Survey.notification_id == notification_id).with_for_update()
    )


async def latest_open_survey(
    session: AsyncSession, *, phone: str, sent_after: datetime, channel: str | None = None
) -> Survey | None:
    """The number's latest survey that went out after `sent_after` and has no answer, locked."""
    query = select(Survey).where(
        Survey.phone == phone,
        Survey.status == SurveyStatus.SENT,
        Survey.sent_at >= sent_after,
    )
    if channel is not None:
        query = query.where(Survey.channel == channel)
    return await session.scalar(
        query.order_by(Survey.sent_at.desc(), Survey.id.desc()).limit(1).with_for_update()
    )


async def lock_open_survey_of_callback(
    session: AsyncSession, callback_id: str, *, sent_after: datetime, lock: bool = True
) -> Survey | None:
    query = select(Survey).where(
        Survey.callback_id == callback_id,
        Survey.status == SurveyStatus.SENT,
        Survey.sent_at >= sent_after,
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def withdraw_surveys(session: AsyncSession, phone: str) -> list[str]:
    """End the number's unanswered surveys; the ids of the messages still to cancel."""
    result = await session.execute(
        update(Survey)
        .where(
            Survey.phone == phone,
            Survey.status.in_((SurveyStatus.SCHEDULED, SurveyStatus.SENT)),
        )
        .values(status=SurveyStatus.WITHDRAWN)
        .returning(Survey.notification_id)
    )
    return [row[0] for row in result if row[0] is not None]


async def cancel_unsent_notifications(session: AsyncSession, ids: Sequence[str]) -> int:
    """Cancel these messages unless they are already on their way or done."""
    if not ids:
        return 0
    result = await session.execute(
        update(Notification)
        .where(Notification.id.in_(ids), Notification.status.in_(send_rule.STARTABLE))
        .values(status=NotificationStatus.CANCELLED, updated_at=func.now())
        .returning(Notification.id)
    )
    return len(result.all())


async def is_no_marketing(session: AsyncSession, phone: str) -> bool:
    return await session.get(NoMarketing, phone) is not None


async def add_no_marketing(session: AsyncSession, phone: str, now: datetime) -> bool:
    """Add `phone`; False if it was there already."""
    result = await session.execute(
        insert(NoMarketing)
        .values(phone=phone, created_at=now)
        .on_conflict_do_nothing()
        .returning(NoMarketing.phone)
    )
    return result.first() is not None


async def add_processed(
    session: AsyncSession, *, kind: str, key: str, result: dict[str, Any], now: datetime
) -> bool:
    """Record an idempotent write as done; False if another transaction recorded it first."""
    inserted = await session.execute(
        insert(ProcessedRequest)
        .values(kind=kind, key=key, result=result, created_at=now)
        .on_conflict_do_nothing()
        .returning(ProcessedRequest.key)
    )
    return inserted.first() is not None


async def latest_callback_of(session: AsyncSession, phone: str) -> Callback | None:
    """The number's newest callback (an inbound SMS is filed under it)."""
    return await session.scalar(
        select(Callback)
        .where(Callback.phone == phone)
        .order_by(Callback.created_at.desc(), Callback.id.desc())
        .limit(1)
    )


# --- voicemails (§11) ---------------------------------------------------------------------


async def voicemail_of_call(session: AsyncSession, provider: str, call_id: str) -> Voicemail | None:
    """The voicemail left on this call, locked for update (take `lock("voicemail", ...)` first)."""
    return await session.scalar(
        select(Voicemail)
        .where(Voicemail.provider == provider, Voicemail.call_id == call_id)
        .with_for_update()
    )


async def get_voicemail(session: AsyncSession, voicemail_id: str) -> Voicemail | None:
    return await session.get(Voicemail, voicemail_id)


async def voicemails_of(
    session: AsyncSession, *, phones: Sequence[str], callback_ids: Sequence[str]
) -> list[Voicemail]:
    """The voicemails of these numbers or callbacks that erasure has not handled, locked."""
    if not phones and not callback_ids:
        return []
    rows = await session.scalars(
        select(Voicemail)
        .where(
            or_(Voicemail.phone.in_(phones), Voicemail.callback_id.in_(callback_ids)),
            or_(Voicemail.erased_at.is_(None), Voicemail.deleted_at.is_(None)),
        )
        .order_by(Voicemail.id)
        .with_for_update()
    )
    return list(rows)


async def next_due_recording_delete(session: AsyncSession, *, now: datetime) -> Voicemail | None:
    """The erased voicemail whose provider delete is most overdue, locked; `SKIP LOCKED`
    keeps two workers (or a worker and a second erasure) off the same recording."""
    return await session.scalar(
        select(Voicemail)
        .where(Voicemail.delete_due_at <= now)
        .order_by(Voicemail.delete_due_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


async def voicemails_of_callback(session: AsyncSession, callback_id: str) -> list[Voicemail]:
    rows = await session.scalars(
        select(Voicemail).where(Voicemail.callback_id == callback_id).order_by(Voicemail.id)
    )
    return list(rows)


async def cancel_claimed_notification(
    session: AsyncSession, notification_id: str, *, attempt: int
) -> None:
    """A send this job claimed and no longer wants: `cancelled`, unless another job took it."""
    await session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.status == NotificationStatus.SENDING,
            Notification.attempts == attempt,
        )
        .values(status=NotificationStatus.CANCELLED, updated_at=func.now())
    )


async def erase_surveys(
    session: AsyncSession, *, phones: Sequence[str], callback_ids: Sequence[str]
) -> int:
    """Forget the number and the comment of an erased person's surveys."""
    if not phones and not callback_ids:
        return 0
    result = await session.execute(
        update(Survey)
        .where(or_(Survey.phone.in_(phones), Survey.callback_id.in_(callback_ids)))
        .values(phone="#erased", comment=None)
        .returning(Survey.id)
    )
    return len(result.all())
