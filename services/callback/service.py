"""The rules of callback: create or merge, book, confirm, cancel, and show where it stands."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, events, lifecycle, notify, repository
from services.callback.capacity import CapacityPlan, slot_id
from services.callback.jobs import NotificationQueue
from services.callback.models import (
    OPEN_STATUSES,
    Callback,
    CallbackRequest,
    Notification,
    ProcessedRequest,
)
from services.callback.schemas import (
    AcknowledgementResult,
    AnsweredCallResult,
    AttemptOut,
    CallbackCreated,
    CallbackDetail,
    CallbackList,
    CallbackOut,
    ConsentOut,
    DoNotCallOut,
    ErasureResult,
    NotificationList,
    NotificationOut,
    SelfServiceView,
)
from services.callback.selfservice import check_token
from services.callback.settings import CallbackSettings
from services.callback.templates import asap_phrase, render_acknowledgement, window_phrase
from shared.contracts import Acknowledgement, AnsweredCall, CallbackCreate, ErasureRequest, Language
from shared.db import after_commit, utcnow
from shared.errors import BadRequest, Conflict, NotFound, ProblemError, Unprocessable
from shared.ids import new_id
from shared.pagination import decode_cursor, encode_cursor
from shared.phone import normalize

log = structlog.get_logger("ringback.callback")


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """The answer to a create: 201 new, 200 merged or repeated, 202 on the do-not-call list."""

    status_code: int
    result: CallbackCreated


def _invalid(loc: list[str | int], msg: str) -> Unprocessable:
    return Unprocessable(
        "The request did not pass validation.", extra={"errors": [{"loc": loc, "msg": msg}]}
    )


def _aware(moment: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC, as the contract's times are.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _phone(raw: str, settings: CallbackSettings, loc: list[str | int]) -> str:
    phone = normalize(raw, settings.default_region)
    if phone is None:
        raise _invalid(loc, "not a valid phone number")
    return phone


def _due_at(data: CallbackCreate, now: datetime) -> datetime:
    """ASAP is due at once; a window that starts later is due when it starts."""
    not_before = data.preferred.not_before
    if not_before is not None and _aware(not_before) > now:
        return _aware(not_before)
    return now


def _created(callback: Callback, *, merged: bool) -> CallbackCreated:
    return CallbackCreated(
        id=callback.id,
        status=cast(Any, callback.status),
        merged=merged,
        contact_count=callback.contact_count,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        flag=callback.flag,
    )


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
    phone = _phone(data.phone, settings, ["body", "phone"])
    now = now or utcnow()
    # Serialise on the request id, then the number (always this order, so no deadlock):
    # a repeated request waits for the first and replays it; two requests for one new
    # number end in one callback. The partial unique index stays the last word.
    await repository.lock(session, "request", data.request_id)
    await repository.lock(session, "phone", phone)
    previous = await repository.get_request(session, data.request_id)
    if previous is not None:
        return CreateOutcome(200, CallbackCreated.model_validate(previous.result))
    if await repository.is_do_not_call(session, phone):
        return await _declined_do_not_call(session, data=data, phone=phone, now=now)

    first_contact = min(_aware(data.first_contact_at), now)
    sla = timedelta(minutes=settings.sla_minutes)
    due = _due_at(data, now)
    email = data.email.lower() if data.email else None
    callback = await repository.find_open_for_phone(session, phone)
    merged = callback is not None
    if callback is None:
        preferred = data.preferred
        window = preferred.not_before is not None or preferred.not_after is not None
        callback = Callback(
            id=new_id(),
            phone=phone,
            email=email,
            name=data.name,
            language=data.language or settings.default_language,
            status="pending",
            source=data.source,
            channel=data.channel,
            priority=0,
            first_contact_at=first_contact,
            due_at=due,
            sla_deadline=first_contact + sla,
            contact_count=1,
            consent_sms=data.consent.sms,
            consent_email=data.consent.email,
            message=data.message,
            asap=preferred.slot_id is None and not window,
            window_start=_aware(preferred.not_before) if preferred.not_before else None,
            window_end=_aware(preferred.not_after) if preferred.not_after else None,
            booking_seq=0,
            attempt_count=0,
            created_at=now,
            updated_at=now,
        )
        session.add(callback)
        await session.flush()
        await events.callback_changed(
            session, callback=callback, type="callback_created", summary="Callback created"
        )
        if preferred.slot_id is not None:
            await _book_chosen(session, settings, callback, preferred.slot_id, queue, now=now)
    else:
        _merge(callback, data=data, email=email, first_contact=first_contact, due=due, sla=sla)
        callback.updated_at = now
        await events.callback_changed(
            session,
            callback=callback,
            type="callback_merged",
            summary="Contact attached to the open callback",
        )

    if _confirmation_due(callback, settings=settings, now=now):
        callback.confirm_key = f"confirmation:{callback.id}:{data.request_id}"
        callback.last_confirmation_at = now
        _enqueue_booking(session, queue, callback.id)

    status_code = 200 if merged else 201
    result = _created(callback, merged=merged)
    session.add(
        CallbackRequest(
            request_id=data.request_id,
            callback_id=callback.id,
            status_code=status_code,
            result=result.model_dump(mode="json"),
            created_at=now,
        )
    )
    try:
        await session.flush()
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


async def _declined_do_not_call(
    session: AsyncSession, *, data: CallbackCreate, phone: str, now: datetime
) -> CreateOutcome:
    """No callback and no SMS; the contact is still recorded on the timeline."""
    result = CallbackCreated(
        id=None,
        status="do_not_call",
        merged=False,
        contact_count=0,
        due_at=None,
        sla_deadline=None,
    )
    await events.emit(
        session,
        customer={"phone": phone, **({"email": data.email.lower()} if data.email else {})},
        ordering_key=phone,
        type=events.DECLINED_DNC,
        channel=data.channel,
        direction="internal",
        summary="No callback: the number is on the do-not-call list",
        data={"request_id": data.request_id, "source": data.source},
    )
    session.add(
        CallbackRequest(
            request_id=data.request_id,
            callback_id=None,
            status_code=202,
            result=result.model_dump(mode="json"),
            created_at=now,
        )
    )
    await session.flush()
    log.info("callback.declined_do_not_call")
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
    plan = await booking.load_plan(session)
    slot = booking.slot_in(plan, slot_ref)
    if slot is None or slot.start < now:
        callback.flag = "requested_slot_unknown"
        return
    if not await booking.hold(session, callback, slot, now=now):
        callback.flag = "requested_slot_full"
        return
    callback.due_at = slot.start
    await lifecycle.transition(
        session, callback, "scheduled", now=now, summary="Booked into the slot the customer chose"
    )
    rows = await notify.reminder(
        session,
        settings=settings,
        callback=callback,
        now=now,
        zone=booking.zone_of(plan, settings),
    )
    notify.enqueue_after_commit(session, queue, rows)


def _merge(
    callback: Callback,
    *,
    data: CallbackCreate,
    email: str | None,
    first_contact: datetime,
    due: datetime,
    sla: timedelta,
) -> None:
    """Attach another contact: earliest due time kept, the SLA clock never restarted."""
    callback.contact_count += 1
    callback.due_at = min(callback.due_at, due)
    callback.first_contact_at = min(callback.first_contact_at, first_contact)
    callback.sla_deadline = min(callback.sla_deadline, callback.first_contact_at + sla)
    # What the customer told us earlier stands; a new contact only fills in what was missing.
    if callback.email is None and email is not None:
        callback.email = email
        callback.consent_email = data.consent.email
    if callback.name is None and data.name:
        callback.name = data.name
    if callback.message is None and data.message:
        callback.message = data.message


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
) -> str:
    """The job after a create: book an ASAP (or window) callback, then confirm what was booked.

    Runs any number of times: the owed `confirm_key` is cleared in the same transaction that
    writes the confirmation rows, whose `(event_key, channel)` is unique.
    """
    now = now or utcnow()
    callback = await repository.lock_callback(session, callback_id)
    if callback is None:
        return "missing"
    key = callback.confirm_key
    if key is None:
        return "nothing owed"
    plan = await booking.load_plan(session)
    zone = booking.zone_of(plan, settings)
    result = "confirmed"
    if (
        callback.status == "pending"
        and callback.slot_start is None
        and callback.attempt_count == 0
        and callback.flag is None
        and (callback.asap or callback.window_end is not None or callback.window_start is not None)
    ):
        if plan is not None and await booking.book_earliest(session, callback, plan, now=now):
            await lifecycle.transition(
                session,
                callback,
                "scheduled",
                now=now,
                summary="Booked into the earliest slot with room before the deadline",
            )
            notify.enqueue_after_commit(
                session,
                queue,
                await notify.reminder(
                    session, settings=settings, callback=callback, now=now, zone=zone
                ),
            )
            result = "booked"
        else:
            callback.flag = "no_slot_before_deadline"
            result = "no slot"
    rows: list[Notification] = []
    if callback.status in OPEN_STATUSES:
        rows = await notify.confirmation(
            session, settings=settings, callback=callback, event_key=key, now=now, zone=zone
        )
    callback.confirm_key = None
    callback.updated_at = now
    notify.enqueue_after_commit(session, queue, rows)
    log.info("callback.confirmation.rendered", callback_id=callback.id, result=result)
    return result


# ----------------------------------------------------------------------------- reading


def slot_ref(callback: Callback) -> str | None:
    return slot_id(callback.slot_start) if callback.slot_start is not None else None


def to_out(callback: Callback) -> CallbackOut:
    return CallbackOut(
        id=callback.id,
        phone=callback.phone,
        email=callback.email,
        name=callback.name,
        language=cast(Language, callback.language),
        status=cast(Any, callback.status),
        source=callback.source,
        channel=callback.channel,
        priority=callback.priority,
        first_contact_at=callback.first_contact_at,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        contact_count=callback.contact_count,
        consent=ConsentOut(sms=callback.consent_sms, email=callback.consent_email),
        message=callback.message,
        last_confirmation_at=callback.last_confirmation_at,
        asap=callback.asap,
        slot_id=slot_ref(callback),
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        flag=callback.flag,
        agent_id=callback.agent_id,
        lease_expires_at=callback.lease_expires_at,
        attempt_count=callback.attempt_count,
        outcome=callback.outcome,
        closed_at=callback.closed_at,
        created_at=callback.created_at,
        updated_at=callback.updated_at,
    )


async def get_callback(*, session: AsyncSession, callback_id: str) -> CallbackDetail:
    """The callback with its attempts and notifications; 404 when there is none."""
    callback = await repository.get_callback(session, callback_id, with_notifications=True)
    if callback is None:
        raise NotFound("No callback has this id.")
    return CallbackDetail(
        **to_out(callback).model_dump(),
        attempts=[AttemptOut.model_validate(a) for a in callback.attempts],
        notifications=[NotificationOut.model_validate(n) for n in callback.notifications],
    )


def _after_id(cursor: str | None) -> str | None:
    if not cursor:
        return None
    (value,) = decode_cursor(cursor, 1)
    # Our cursors hold a row id (a UUID); anything else was not made by this API.
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadRequest("The cursor is not one this API made.") from None


async def list_callbacks(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    status: str | None,
    phone: str | None,
    due_before: datetime | None,
    limit: int,
    cursor: str | None,
    agent_id: str | None = None,
) -> CallbackList:
    """One page of callbacks, newest first."""
    e164 = _phone(phone, settings, ["query", "phone"]) if phone is not None else None
    rows = await repository.list_callbacks(
        session,
        status=status,
        phone=e164,
        agent_id=agent_id,
        due_before=_aware(due_before) if due_before else None,
        after_id=_after_id(cursor),
        limit=limit + 1,
    )
    page = list(rows[:limit])
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit and page else None
    return CallbackList(items=[to_out(c) for c in page], next_cursor=next_cursor)


# ----------------------------------------------------------------------------- booking and cancel


async def _locked(session: AsyncSession, callback_id: str) -> Callback:
    callback = await repository.lock_callback(session, callback_id)
    if callback is None:
        raise NotFound("No callback has this id.")
    return callback


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
    callback = await _locked(session, callback_id)
    lifecycle.check(callback, "scheduled")
    plan = await booking.load_plan(session)
    slot = booking.slot_in(plan, slot_ref_in)
    if slot is None:
        raise _invalid(["body", "slot_id"], "no such slot in the capacity plan")
    if slot.end <= now:
        raise _invalid(["body", "slot_id"], "that slot is over")
    if callback.slot_start == slot.start and callback.status == "scheduled":
        return callback
    old_kind_reminder = callback.slot_start is not None
    if not await booking.hold(session, callback, slot, now=now):
        raise Conflict("That slot is full; choose another.", slug="slot-full")
    if old_kind_reminder:
        await repository.cancel_notifications(session, callback_id=callback.id, kind="reminder")
    callback.asap = False
    callback.flag = None
    callback.due_at = slot.start
    await lifecycle.transition(
        session,
        callback,
        "scheduled",
        now=now,
        summary="Booked into another slot",
        actor=actor,
    )
    zone = booking.zone_of(plan, settings)
    rows = await notify.rebooked(session, settings=settings, callback=callback, now=now, zone=zone)
    rows += await notify.reminder(session, settings=settings, callback=callback, now=now, zone=zone)
    notify.enqueue_after_commit(session, queue, rows)
    return callback


async def cancel(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    queue: NotificationQueue,
    by: str,
    notify_customer: bool = True,
    actor: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Callback:
    """Cancel an open callback (409 if closed), give back its seat, tell the customer."""
    now = now or utcnow()
    callback = await _locked(session, callback_id)
    lifecycle.check(callback, "cancelled")
    await booking.release_if_ahead(session, callback, now=now)
    await lifecycle.transition(
        session,
        callback,
        "cancelled",
        now=now,
        outcome=f"cancelled_by_{by}",
        summary=f"Cancelled by the {by}",
        actor=actor,
    )
    if notify_customer:
        rows = await notify.cancelled(session, settings=settings, callback=callback, now=now)
        notify.enqueue_after_commit(session, queue, rows)
    return callback


# ----------------------------------------------------------------------------- capacity


async def put_capacity(
    *, session: AsyncSession, plan: CapacityPlan, now: datetime | None = None
) -> CapacityPlan:
    await repository.put_plan(session, plan.model_dump(mode="json"), now or utcnow())
    log.info("callback.capacity.updated", slot_minutes=plan.slot_minutes, timezone=plan.timezone)
    return plan


async def get_capacity(*, session: AsyncSession) -> CapacityPlan:
    plan = await booking.load_plan(session)
    if plan is None:
        raise NotFound("No capacity plan has been set; PUT /v1/capacity sets one.")
    return plan


# ----------------------------------------------------------------------------- do-not-call


async def add_do_not_call(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    raw_phone: str,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> tuple[bool, DoNotCallOut]:
    """Put a number on the list; its open callback (if any) is cancelled without an SMS."""
    now = now or utcnow()
    phone = _phone(raw_phone, settings, ["path", "phone"])
    await repository.lock(session, "phone", phone)
    created = await repository.add_do_not_call(session, phone, now)
    cancelled_id: str | None = None
    open_callback = await repository.find_open_for_phone(session, phone)
    if open_callback is not None:
        await booking.release_if_ahead(session, open_callback, now=now)
        await lifecycle.transition(
            session,
            open_callback,
            "cancelled",
            now=now,
            outcome="do_not_call",
            summary="Cancelled: the number was put on the do-not-call list",
        )
        await _cancel_unsent(session, open_callback.id)
        cancelled_id = open_callback.id
    return created, DoNotCallOut(phone=phone, created_at=now, cancelled_callback_id=cancelled_id)


async def _cancel_unsent(session: AsyncSession, callback_id: str) -> None:
    for kind in ("confirmation", "reminder", "tried", "rebooked"):
        await repository.cancel_notifications(session, callback_id=callback_id, kind=kind)


async def remove_do_not_call(
    *, session: AsyncSession, settings: CallbackSettings, raw_phone: str
) -> bool:
    phone = _phone(raw_phone, settings, ["path", "phone"])
    return await repository.remove_do_not_call(session, phone)


# ----------------------------------------------------------------------------- other channels


async def answered_call(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: AnsweredCall,
    now: datetime | None = None,
) -> AnsweredCallResult:
    """The customer got through another way: their open callback is completed."""
    now = now or utcnow()
    phone = _phone(data.phone, settings, ["body", "phone"])
    await repository.lock(session, "answered", data.request_id)
    previous = await repository.get_processed(session, "answered_call", data.request_id)
    if previous is not None:
        return AnsweredCallResult.model_validate(previous.result)
    result = AnsweredCallResult(status="disabled")
    if settings.complete_on_inbound_answer:
        await repository.lock(session, "phone", phone)
        callback = await repository.find_open_for_phone(session, phone)
        result = AnsweredCallResult(status="no_open_callback")
        if callback is not None:
            await booking.release_if_ahead(session, callback, now=now)
            await lifecycle.transition(
                session,
                callback,
                "completed",
                now=now,
                outcome="reached_inbound",
                summary="Completed: the customer got through on an inbound call",
                extra={"inbound_id": data.inbound_id, "answered_at": data.occurred_at.isoformat()},
            )
            await _cancel_unsent(session, callback.id)
            result = AnsweredCallResult(status="completed", callback_id=callback.id)
    session.add(
        ProcessedRequest(
            kind="answered_call",
            key=data.request_id,
            result=result.model_dump(mode="json"),
            created_at=now,
        )
    )
    return result


async def acknowledge(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: Acknowledgement,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> tuple[bool, AcknowledgementResult]:
    """An email-only contact gets one "we received your message" email (no callback row)."""
    now = now or utcnow()
    await repository.lock(session, "acknowledgement", data.request_id)
    previous = await repository.get_processed(session, "acknowledgement", data.request_id)
    if previous is not None:
        return False, AcknowledgementResult.model_validate(previous.result)
    language = data.language or settings.default_language
    text = render_acknowledgement(language=language, name=data.name)
    row = Notification(
        id=new_id(),
        callback_id=None,
        kind="acknowledgement",
        event_key=f"acknowledgement:{data.request_id}",
        channel="email",
        provider=settings.email_provider,
        status="queued",
        recipient=data.email.lower(),
        subject=text.email_subject,
        body=text.email_body,
        attempts=0,
        max_attempts=settings.notification_max_tries,
        next_attempt_at=now,
    )
    session.add(row)
    result = AcknowledgementResult(status="queued", notification_id=row.id)
    session.add(
        ProcessedRequest(
            kind="acknowledgement",
            key=data.request_id,
            result=result.model_dump(mode="json"),
            created_at=now,
        )
    )
    await session.flush()
    notify.enqueue_after_commit(session, queue, [row])
    return True, result


_PII_KEYS = ("phone", "email", "name", "external_id")


async def erase(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: ErasureRequest,
    now: datetime | None = None,
) -> ErasureResult:
    """Forget these identities across callback's schema (idempotent on the request id).

    Open callbacks are cancelled (there is nobody left to call); phone numbers become a random
    placeholder that cannot be turned back, and email, name, message, notes, message texts
    and recipients are blanked, in the outbox payloads too. The do-not-call list is kept.
    """
    now = now or utcnow()
    await repository.lock(session, "erasure", data.id)
    previous = await repository.get_processed(session, "erasure", data.id)
    if previous is not None:
        return ErasureResult.model_validate(previous.result)
    phones = sorted({p for raw in data.phones if (p := normalize(raw, settings.default_region))})
    emails = sorted({e.lower() for e in data.emails})
    for phone in phones:
        await repository.lock(session, "phone", phone)
    callbacks = await repository.callbacks_of(session, phones=phones, emails=emails)
    cancelled = 0
    placeholders: list[str] = []
    for callback in callbacks:
        if callback.status in OPEN_STATUSES:
            await booking.release_if_ahead(session, callback, now=now)
            lifecycle.check(callback, "cancelled")
            callback.status = "cancelled"
            callback.outcome = "erased"
            callback.closed_at = now
            callback.agent_id = None
            callback.lease_expires_at = None
            callback.confirm_key = None
            cancelled += 1
        placeholders.append(callback.phone)
        callback.phone = "#" + secrets.token_hex(7)
        callback.email = callback.name = callback.message = None
        callback.erased_at = callback.updated_at = now
    ids = [c.id for c in callbacks]
    notifications = await repository.erase_notifications(
        session, callback_ids=ids, recipients=[*phones, *emails]
    )
    attempts = await repository.erase_attempt_notes(session, ids)
    rows = await repository.outbox_rows_for(
        session, keys=sorted({*phones, *placeholders}), phones=phones, emails=emails
    )
    for row in rows:
        payload = dict(row.payload)
        customer = dict(payload.get("customer") or {})
        for key in _PII_KEYS:
            customer.pop(key, None)
        payload["customer"] = customer
        row.payload = payload
        row.ordering_key = "erased:" + data.id
    result = ErasureResult(
        id=data.id,
        callbacks=len(callbacks),
        cancelled=cancelled,
        notifications=notifications,
        attempts=attempts,
        outbox=len(rows),
    )
    session.add(
        ProcessedRequest(
            kind="erasure", key=data.id, result=result.model_dump(mode="json"), created_at=now
        )
    )
    log.info("callback.erased", erasure_id=data.id, callbacks=len(callbacks), outbox=len(rows))
    return result


# ----------------------------------------------------------------------------- notifications


async def list_notifications(
    *, session: AsyncSession, status: str | None, limit: int, cursor: str | None
) -> NotificationList:
    rows = await repository.list_notifications(
        session, status=status, after_id=_after_id(cursor), limit=limit + 1
    )
    page = list(rows[:limit])
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit and page else None
    return NotificationList(
        items=[NotificationOut.model_validate(n) for n in page], next_cursor=next_cursor
    )


async def retry_notification(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    notification_id: str,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> NotificationOut:
    """Give a dead (or failing) notification a fresh budget of tries and queue it now."""
    now = now or utcnow()
    row = await repository.lock_notification(session, notification_id)
    if row is None:
        raise NotFound("No notification has this id.")
    if row.status not in ("dead", "failed"):
        raise Conflict(
            f"Only a dead or failed notification can be retried; this one is {row.status}."
        )
    if row.recipient == "erased":
        raise Conflict("This notification's recipient was erased.")
    row.status = "queued"
    row.max_attempts = row.attempts + settings.notification_max_tries
    row.next_attempt_at = now
    row.updated_at = now
    notify.enqueue_after_commit(session, queue, [row])
    return NotificationOut.model_validate(row)


# ----------------------------------------------------------------------------- self-service


class LinkExpired(ProblemError):
    status, title, slug = 410, "Gone", "link-expired"


async def _self_callback(
    session: AsyncSession, settings: CallbackSettings, token: str, *, lock: bool
) -> Callback:
    """The one callback a token grants; 404 for anything forged, 410 for an old link."""
    state, callback_id = check_token(settings, token)
    if state == "expired":
        raise LinkExpired("This link has expired.")
    if callback_id is None:
        raise NotFound("Nothing here.")
    if lock:
        callback = await repository.lock_callback(session, callback_id)
    else:
        callback = await repository.get_callback(session, callback_id)
    if callback is None or callback.erased_at is not None:
        raise NotFound("Nothing here.")
    return callback


async def self_view(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    token: str,
    now: datetime | None = None,
    language: Language | None = None,
) -> SelfServiceView:
    """The customer's view, in `language` (the page's switch) or else the callback's own."""
    callback = await _self_callback(session, settings, token, lock=False)
    return await _self_out(session, settings, callback, now or utcnow(), language=language)


async def _self_out(
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    now: datetime,
    *,
    language: Language | None = None,
) -> SelfServiceView:
    plan = await booking.load_plan(session)
    zone = booking.zone_of(plan, settings)
    language = language or cast(Language, callback.language)
    if callback.slot_start is not None and callback.slot_end is not None:
        when = window_phrase(
            language, start=callback.slot_start, end=callback.slot_end, now=now, tz=zone
        )
    else:
        when = asap_phrase(language, deadline=callback.sla_deadline, now=now, tz=zone)
    waiting = callback.status in ("pending", "scheduled")
    return SelfServiceView(
        status=cast(Any, callback.status),
        asap=callback.asap,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        slot_id=slot_ref(callback),
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        when=when,
        language=language,
        can_cancel=waiting,
        can_rebook=waiting and plan is not None,
    )


async def self_act(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    token: str,
    action: str,
    slot_id_in: str | None,
    queue: NotificationQueue,
    now: datetime | None = None,
    language: Language | None = None,
) -> SelfServiceView:
    """The customer cancels or rebooks their own callback (not one an agent is working on)."""
    now = now or utcnow()
    callback = await _self_callback(session, settings, token, lock=True)
    if callback.status not in ("pending", "scheduled"):
        raise Conflict(f"This callback is {callback.status} and can no longer be changed.")
    actor = {"kind": "customer"}
    if action == "cancel":
        callback = await cancel(
            session=session,
            settings=settings,
            callback_id=callback.id,
            queue=queue,
            by="customer",
            actor=actor,
            now=now,
        )
    else:
        if not slot_id_in:
            raise _invalid(["body", "slot_id"], "rebooking needs a slot_id")
        callback = await book(
            session=session,
            settings=settings,
            callback_id=callback.id,
            slot_ref_in=slot_id_in,
            queue=queue,
            actor=actor,
            now=now,
        )
    return await _self_out(session, settings, callback, now, language=language)
