"""A contact becomes a callback: create or merge (one open callback per number), then confirm."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import booking, events, inputs, lifecycle, notify, queues, repository
from services.callback.capacity import Slot
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback, rank_at_of
from services.callback.schemas import CallbackCreated
from services.callback.settings import CallbackSettings
from shared.contracts import CallbackCreate
from shared.db import after_commit, rollback, unit_of_work, utcnow
from shared.errors import Conflict, ProblemError
from shared.ids import new_id
from shared.phone import is_callable, normalize
from shared.vocabulary import (
    OPEN_STATUSES,
    CallbackStatus,
    ClosingOutcome,
    Direction,
    EventType,
    ExtensionEventType,
)

log = structlog.get_logger("ringback.callback")


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """The answer to a create: 201 new, 200 merged or repeated, 202 on the do-not-call list."""

    status_code: int
    result: CallbackCreated


def _due_at(data: CallbackCreate, now: datetime) -> datetime:
    """ASAP is due at once; a window that starts later is due when it starts."""
    not_before = data.preferred.not_before
    if not_before is not None and inputs.aware(not_before) > now:
        return inputs.aware(not_before)
    return now


def _created(callback: Callback, *, merged: bool) -> CallbackCreated:
    return CallbackCreated(
        id=callback.id,
        status=CallbackStatus(callback.status),
        merged=merged,
        contact_count=callback.contact_count,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        flag=callback.flag,
    )


def _dialed(raw: str | None, settings: CallbackSettings) -> str | None:
    # The company's number as the phone system reported it; one we cannot read picks no queue.
    return normalize(raw, settings.default_region) if raw else None


def _enqueue_booking(session: AsyncSession, queue: NotificationQueue, callback_id: str) -> None:
    async def enqueue() -> None:
        await queue.enqueue_booking(callback_id)

    after_commit(session, enqueue)


async def create_callback(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: CallbackCreate,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> CreateOutcome:
    """Create a callback, or attach the contact to the number's open one (merge rule).

    The confirmation is owed (`confirm_key`) and sent by the `book_and_confirm` job, which
    books an ASAP callback first so the confirmation can name the window.
    """
    phone = inputs.phone(data.phone, settings, ["body", "phone"])
    now = now or utcnow()
    # Serialise on the request id, then the number (always this order, so no deadlock):
    # a repeated request waits for the first and replays it; two requests for one new
    # number end in one callback. The partial unique index stays the last word.
    await repository.lock_in_order(session, ("request", data.request_id), ("phone", phone))
    # The queue, the number's open callback in it, the request's stored answer and the
    # do-not-call list: one statement, after the locks.
    choice = await queues.choose(
        session,
        named=data.queue,
        dialed=_dialed(data.dialed, settings),
        phone=phone,
        request_id=data.request_id,
    )
    if choice.answer is not None:
        return CreateOutcome(200, CallbackCreated.model_validate(choice.answer))
    if choice.do_not_call:
        return await _declined(session, data=data, phone=phone, now=now, why=_DO_NOT_CALL)
    if not is_callable(phone):
        return await _declined(session, data=data, phone=phone, now=now, why=_NOT_CALLABLE)

    # Asked for in the phone queue (§11): first contact is when the caller entered it.
    queued_at = min(inputs.aware(data.queued_at), now) if data.queued_at is not None else None
    first_contact = queued_at or min(inputs.aware(data.first_contact_at), now)
    rules = choice.rules(settings)
    sla = rules.sla
    due = _due_at(data, now)
    email = data.email.lower() if data.email else None
    # Locked by the choice already; read only when there is one (most creates: none).
    callback = await session.get(Callback, choice.open_id) if choice.open_id else None
    merged = callback is not None
    if callback is None:
        preferred = data.preferred
        window = preferred.not_before is not None or preferred.not_after is not None
        owner = inputs.agent_id(data.owner_agent_id, ["body", "owner_agent_id"])
        callback = Callback(
            id=new_id(),
            phone=phone,
            queue=choice.key,
            queue_reason=choice.reason,
            email=email,
            name=data.name,
            # Unknown: the queue's first language, else the site's, and anyone may take it.
            language=data.language or next(iter(rules.languages), settings.default_language),
            language_known=data.language is not None,
            status=CallbackStatus.PENDING,
            source=data.source,
            channel=data.channel,
            priority=data.priority,
            owner_agent_id=owner,
            owner_until=(
                inputs.aware(data.owner_until)
                if data.owner_until is not None
                else (due + timedelta(minutes=settings.owner_minutes) if owner else None)
            ),
            first_contact_at=first_contact,
            due_at=due,
            sla_deadline=first_contact + sla,
            contact_count=1,
            consent_sms=data.consent.sms,
            consent_email=data.consent.email,
            message=data.message,
            # In the phone queue the caller keeps their place (`rank_at = queued_at`) and is
            # due at once: a slot would make the spoken estimate a gate.
            asap=preferred.slot_id is None and not window and queued_at is None,
            queued_at=queued_at,
            told_by=(
                inputs.aware(data.estimated_callback_at)
                if queued_at is not None and data.estimated_callback_at is not None
                else None
            ),
            window_start=inputs.aware(preferred.not_before) if preferred.not_before else None,
            window_end=inputs.aware(preferred.not_after) if preferred.not_after else None,
            booking_seq=0,
            attempt_count=0,
            created_at=now,
            updated_at=now,
        )
        # A new callback is always owed its confirmation. Owed before the insert, the row is
        # written once: set after it, it was an UPDATE of its own on every create.
        _owe_confirmation(session, queue, callback, request_id=data.request_id, now=now)
        session.add(callback)
        await session.flush()
        await events.callback_changed(
            session,
            callback=callback,
            type=EventType.CALLBACK_CREATED,
            summary="Callback created",
        )
        if preferred.slot_id is not None:
            await _book_chosen(session, settings, callback, preferred.slot_id, queue, now=now)
        if callback.owner_agent_id is not None and data.owner_until is None:
            # The default hold runs from when it falls due: a booked slot's start, if any.
            callback.owner_until = callback.due_at + timedelta(minutes=settings.owner_minutes)
    else:
        _merge(
            callback,
            data=data,
            email=email,
            first_contact=first_contact,
            due=due,
            sla=sla,
            now=now,
            queued_at=queued_at,
        )
        callback.updated_at = now
        await events.callback_changed(
            session,
            callback=callback,
            type=EventType.CALLBACK_MERGED,
            summary="Contact attached to the open callback",
        )
        if _confirmation_due(callback, settings=settings, now=now):
            _owe_confirmation(session, queue, callback, request_id=data.request_id, now=now)

    status_code = 200 if merged else 201
    result = _created(callback, merged=merged)
    try:
        await session.flush()  # the callback's changes, before the answer that names it
        await repository.record_answer(
            session,
            request_id=data.request_id,
            callback_id=callback.id,
            status_code=status_code,
            result=result.model_dump(mode="json"),
            now=now,
        )
    except IntegrityError as exc:
        # Only a writer that bypassed the locks above can get here; let the client retry.
        raise Conflict("The callback for this number changed at the same time; retry.") from exc
    log.info(
        "callback.merged" if merged else "callback.created",
        callback_id=callback.id,
        contact_count=callback.contact_count,
        status=callback.status,
    )
    return CreateOutcome(status_code, result)


async def create_batch(
    *,
    sessions: async_sessionmaker[AsyncSession],
    settings: CallbackSettings,
    items: list[CallbackCreate],
    queue: NotificationQueue,
) -> list[CreateOutcome]:
    """Each create as `create_callback` makes it, in order, each committed on its own.

    A transaction per item keeps one item's locks and failure its own. An item refused stops
    the batch with its problem, naming the item; the items before it stay made, and sending
    the batch again replays them by their request ids (an outbox relay then sends each row on
    its own, and each gets its own answer).
    """
    outcomes: list[CreateOutcome] = []
    for index, data in enumerate(items):
        try:
            async with unit_of_work(sessions) as session:
                outcomes.append(
                    await create_callback(
                        session=session, settings=settings, data=data, queue=queue
                    )
                )
        except ProblemError as problem:
            raise _of_item(problem, index, made=len(outcomes)) from None
    return outcomes


def _of_item(problem: ProblemError, index: int, *, made: int) -> ProblemError:
    """The item's problem, its `errors` located in the batch (`["body", "callbacks", i, ...]`)."""
    extra = dict(problem.extra)
    errors = extra.get("errors")
    if isinstance(errors, list):
        extra["errors"] = [
            {**error, "loc": ["body", "callbacks", index, *error.get("loc", ["body"])[1:]]}
            if isinstance(error, dict)
            else error
            for error in errors
        ]
    extra["item"] = index
    extra["made"] = made
    return ProblemError(
        f"Item {index}: {problem.detail}",
        status=problem.status,
        title=problem.title,
        slug=problem.slug,
        headers=problem.headers,
        extra=extra,
    )


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a contact gets no callback, as its answer, its timeline event and its log say it."""

    status: ClosingOutcome
    event_type: ExtensionEventType
    summary: str
    log_event: str


_DO_NOT_CALL = _Refusal(
    ClosingOutcome.DO_NOT_CALL,
    ExtensionEventType.CALLBACK_DECLINED_DNC,
    "No callback: the number is on the do-not-call list",
    "callback.declined_do_not_call",
)
_NOT_CALLABLE = _Refusal(
    ClosingOutcome.NUMBER_NOT_CALLABLE,
    ExtensionEventType.CALLBACK_DECLINED_NUMBER_TYPE,
    "No callback: we do not call or text premium-rate and other special numbers",
    "callback.declined_number_type",
)


async def _declined(
    session: AsyncSession, *, data: CallbackCreate, phone: str, now: datetime, why: _Refusal
) -> CreateOutcome:
    """No callback and no SMS; the contact is still recorded on the timeline, with the reason."""
    result = CallbackCreated(
        id=None,
        status=why.status,
        merged=False,
        contact_count=0,
        due_at=None,
        sla_deadline=None,
    )
    await events.emit(
        session,
        customer={"phone": phone, **({"email": data.email.lower()} if data.email else {})},
        ordering_key=phone,
        type=why.event_type,
        channel=data.channel,
        direction=Direction.INTERNAL,
        summary=why.summary,
        data={"request_id": data.request_id, "source": data.source},
    )
    await repository.record_answer(
        session,
        request_id=data.request_id,
        callback_id=None,
        status_code=202,
        result=result.model_dump(mode="json"),
        now=now,
    )
    log.info(why.log_event)
    return CreateOutcome(202, result)


async def _book_chosen(
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    slot_ref: str,
    queue: NotificationQueue,
    *,
    now: datetime,
) -> None:
    """Book the slot the customer chose; full or unknown, the callback waits, flagged."""
    rules = await queues.rules(session, settings, callback.queue)
    slot = booking.slot_in(rules.plan, slot_ref)
    if slot is None or slot.start < now:
        callback.flag = "requested_slot_unknown"
        return
    if not await booking.hold(session, callback, slot, now=now):
        callback.flag = "requested_slot_full"
        return
    callback.due_at = slot.start
    await lifecycle.transition(
        session,
        callback,
        CallbackStatus.SCHEDULED,
        now=now,
        summary="Booked into the slot the customer chose",
    )
    await notify.send(
        session,
        queue,
        settings=settings,
        callback=callback,
        messages=[notify.reminder(settings, callback, now=now, zone=rules.zone)],
        now=now,
    )


def _merge(
    callback: Callback,
    *,
    data: CallbackCreate,
    email: str | None,
    first_contact: datetime,
    due: datetime,
    sla: timedelta,
    now: datetime,
    queued_at: datetime | None = None,
) -> None:
    """Attach another contact: earliest due time kept, the SLA clock never restarted."""
    callback.contact_count += 1
    callback.due_at = min(callback.due_at, due)
    callback.first_contact_at = min(callback.first_contact_at, first_contact)
    callback.sla_deadline = min(callback.sla_deadline, callback.first_contact_at + sla)
    if queued_at is not None:
        # Asked for in the phone queue (§11): the earlier place wins, whichever contact gave
        # it, and what the caller was told joins the promise (the earlier time stands).
        if queued_at < rank_at_of(callback):
            callback.queued_at = queued_at
        told = data.estimated_callback_at
        if told is not None:
            told = inputs.aware(told)
            callback.told_by = told if callback.told_by is None else min(callback.told_by, told)
    # Anyone who knows the number can send a contact request with it, so what a later contact
    # says is kept apart as unverified: agents see it as such, and no link, reminder or notice
    # ever goes to its email (docs/reliability.md §3, "Contact points"). The first one given
    # stands.
    given = False
    if email is not None and email != callback.email and callback.unverified_email is None:
        callback.unverified_email = email
        given = True
    if data.name and data.name != callback.name and callback.unverified_name is None:
        callback.unverified_name = data.name
        given = True
    if data.message and data.message != callback.message and callback.unverified_message is None:
        callback.unverified_message = data.message
        given = True
    if given:
        callback.unverified_at = now


def _owe_confirmation(
    session: AsyncSession,
    queue: NotificationQueue,
    callback: Callback,
    *,
    request_id: str,
    now: datetime,
) -> None:
    """The `book_and_confirm` job owes this contact a confirmation (enqueued at commit)."""
    callback.confirm_key = f"confirmation:{callback.id}:{request_id}"
    callback.last_confirmation_at = now
    _enqueue_booking(session, queue, callback.id)


def _confirmation_due(callback: Callback, *, settings: CallbackSettings, now: datetime) -> bool:
    last = callback.last_confirmation_at
    cooldown = timedelta(minutes=settings.confirmation_cooldown_minutes)
    return last is None or now - last >= cooldown


async def book_and_confirm(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    queue: NotificationQueue,
    now: datetime | None = None,
    take_now: notify.TakeNow | None = None,
) -> str:
    """The job after a create: book an ASAP (or window) callback, then confirm what was booked.

    Runs any number of times: the owed `confirm_key` is cleared in the same transaction that
    writes the confirmation rows, whose `(event_key, channel)` is unique.

    The seat is taken last (`booking.book_earliest`'s `seat_last`). When the slot filled in the
    meantime, what was written for it is rolled back and the job books again from a fresh
    read; the last time with the seat taken first, which moves on to the next slot by itself.
    """
    now = now or utcnow()
    for _ in range(_SEAT_RACES - 1):
        try:
            return await _book_and_confirm(
                session, settings, callback_id, queue, now=now, seat_last=True, take_now=take_now
            )
        except booking.SeatGone:
            log.info("callback.booking.seat_race_lost", callback_id=callback_id)
            await rollback(session)
    return await _book_and_confirm(
        session, settings, callback_id, queue, now=now, seat_last=False, take_now=take_now
    )


# Bookings in a row that may lose their pencilled-in seat before one takes the seat first.
_SEAT_RACES = 3


async def _book_and_confirm(
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    queue: NotificationQueue,
    *,
    now: datetime,
    seat_last: bool,
    take_now: notify.TakeNow | None,
) -> str:
    found = await repository.lock_callback_with_queue(session, callback_id)
    if found is None:
        return "missing"
    callback, queue_row = found
    key = callback.confirm_key
    if key is None:
        return "nothing owed"
    rules = queues.rules_of(queue_row, settings)
    plan, zone = rules.plan, rules.zone
    result = "confirmed"
    messages: list[notify.Message | None] = []
    pencilled: Slot | None = None
    if (
        callback.status == CallbackStatus.PENDING
        and callback.slot_start is None
        and callback.attempt_count == 0
        and callback.flag is None
        and (callback.asap or callback.window_end is not None or callback.window_start is not None)
    ):
        slot = None
        if plan is not None:
            slot = await booking.book_earliest(
                session, callback, plan, now=now, seat_last=seat_last
            )
        if slot is not None:
            await lifecycle.transition(
                session,
                callback,
                CallbackStatus.SCHEDULED,
                now=now,
                summary="Booked into the earliest slot with room before the deadline",
            )
            messages.append(notify.reminder(settings, callback, now=now, zone=zone))
            result = "booked"
            pencilled = slot if seat_last else None
        else:
            callback.flag = "no_slot_before_deadline"
            result = "no slot"
    if callback.status in OPEN_STATUSES:
        messages.append(notify.confirmation(settings, callback, event_key=key, now=now, zone=zone))
    callback.confirm_key = None
    callback.updated_at = now
    await notify.send(
        session,
        queue,
        settings=settings,
        callback=callback,
        messages=messages,
        now=now,
        rules=rules,
        take_now=take_now,
    )
    if pencilled is not None:
        await booking.take_pencilled_seat(session, callback, pencilled)
    log.info("callback.confirmation.rendered", callback_id=callback.id, result=result)
    return result
