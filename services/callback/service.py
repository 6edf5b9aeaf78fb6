"""The rules of callback: create or merge, confirm, and show where a callback stands."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import events, repository
from services.callback.models import Callback, CallbackRequest, Notification
from services.callback.queue import NotificationQueue
from services.callback.schemas import (
    CallbackCreated,
    CallbackDetail,
    CallbackList,
    CallbackOut,
    ConsentOut,
    NotificationOut,
)
from services.callback.selfservice import self_service_link
from services.callback.settings import CallbackSettings
from services.callback.templates import Confirmation, render_confirmation
from shared.contracts import CallbackCreate, Language
from shared.db import after_commit, utcnow
from shared.errors import Conflict, NotFound, Unprocessable
from shared.ids import new_id
from shared.phone import normalize, region_of

log = structlog.get_logger("ringback.callback")


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """The answer to a create: 201 for a new callback, 200 when merged or repeated."""

    status_code: int
    result: CallbackCreated


def _invalid(loc: list[str | int], msg: str) -> Unprocessable:
    return Unprocessable(
        "The request did not pass validation.", extra={"errors": [{"loc": loc, "msg": msg}]}
    )


def _aware(moment: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC, as the contract's times are.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _due_at(data: CallbackCreate, now: datetime) -> datetime:
    """ASAP is due at once; a window that starts later is due when it starts."""
    not_before = data.preferred.not_before
    if not_before is not None and _aware(not_before) > now:
        return _aware(not_before)
    return now


async def create_callback(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: CallbackCreate,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> CreateOutcome:
    """Create a callback, or attach the contact to the number's open one (merge rule)."""
    phone = normalize(data.phone, settings.default_region)
    if phone is None:
        raise _invalid(["body", "phone"], "not a valid phone number")
    now = now or utcnow()
    # Serialise on the request id, then the number (always this order, so no deadlock):
    # a repeated request waits for the first and replays it; two requests for one new
    # number end in one callback. The partial unique index stays the last word.
    await repository.lock(session, "request", data.request_id)
    await repository.lock(session, "phone", phone)
    previous = await repository.get_request(session, data.request_id)
    if previous is not None:
        return CreateOutcome(200, CallbackCreated.model_validate(previous.result))

    first_contact = min(_aware(data.first_contact_at), now)
    sla = timedelta(minutes=settings.sla_minutes)
    due = _due_at(data, now)
    email = data.email.lower() if data.email else None
    callback = await repository.find_open_for_phone(session, phone)
    merged = callback is not None
    if callback is None:
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
            created_at=now,
            updated_at=now,
        )
        session.add(callback)
    else:
        _merge(callback, data=data, email=email, first_contact=first_contact, due=due, sla=sla)
        callback.updated_at = now

    notifications: list[Notification] = []
    if _confirmation_due(callback, settings=settings, now=now):
        notifications = _confirmations(
            callback,
            settings=settings,
            event_key=f"confirmation:{callback.id}:{data.request_id}",
            now=now,
        )
        if notifications:
            callback.last_confirmation_at = now
    session.add_all(notifications)

    await events.callback_changed(
        session,
        callback=callback,
        type="callback_merged" if merged else "callback_created",
        summary="Contact attached to the open callback" if merged else "Callback created",
    )
    status_code = 200 if merged else 201
    result = CallbackCreated(
        id=callback.id,
        status=cast(Any, callback.status),
        merged=merged,
        contact_count=callback.contact_count,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
    )
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

    ids = [n.id for n in notifications]
    if ids:

        async def enqueue() -> None:
            await queue.enqueue_notifications(ids)

        after_commit(session, enqueue)
    log.info(
        "callback.merged" if merged else "callback.created",
        callback_id=callback.id,
        notifications=len(ids),
        contact_count=callback.contact_count,
    )
    return CreateOutcome(status_code, result)


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


def _confirmations(
    callback: Callback, *, settings: CallbackSettings, event_key: str, now: datetime
) -> list[Notification]:
    """The confirmation rows (SMS and/or email) for `callback`, with their rendered text."""
    language = cast(Language, callback.language)
    text: Confirmation = render_confirmation(
        language=language,
        name=callback.name,
        phone=callback.phone,
        deadline=callback.sla_deadline,
        now=now,
        tz=ZoneInfo(settings.site_timezone),
        link=self_service_link(settings, callback.id),
    )
    rows: list[Notification] = []
    common: dict[str, Any] = {
        "callback_id": callback.id,
        "kind": "confirmation",
        "event_key": event_key,
        "status": "queued",
        "attempts": 0,
        "max_attempts": settings.notification_max_tries,
        "next_attempt_at": now,
    }
    if callback.consent_sms:
        if region_of(callback.phone) in settings.sms_allowed_regions:
            rows.append(
                Notification(
                    id=new_id(),
                    channel="sms",
                    provider=settings.sms_provider,
                    recipient=callback.phone,
                    body=text.sms,
                    **common,
                )
            )
        else:
            log.info("callback.confirmation.sms_region_blocked", callback_id=callback.id)
    if callback.email and callback.consent_email:
        rows.append(
            Notification(
                id=new_id(),
                channel="email",
                provider=settings.email_provider,
                recipient=callback.email,
                subject=text.email_subject,
                body=text.email_body,
                **common,
            )
        )
    return rows


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
        created_at=callback.created_at,
        updated_at=callback.updated_at,
    )


async def get_callback(*, session: AsyncSession, callback_id: str) -> CallbackDetail:
    """The callback with its notifications; 404 when there is none."""
    callback = await repository.get_callback(session, callback_id, with_notifications=True)
    if callback is None:
        raise NotFound("No callback has this id.")
    return CallbackDetail(
        **to_out(callback).model_dump(),
        notifications=[NotificationOut.model_validate(n) for n in callback.notifications],
    )


def _encode_cursor(callback_id: str) -> str:
    return base64.urlsafe_b64encode(callback_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid(["query", "cursor"], "not a cursor this API gave out") from None
    if not value or len(value) > 64:
        raise _invalid(["query", "cursor"], "not a cursor this API gave out")
    return value


async def list_callbacks(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    status: str | None,
    phone: str | None,
    due_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> CallbackList:
    """One page of callbacks, newest first."""
    e164: str | None = None
    if phone is not None:
        e164 = normalize(phone, settings.default_region)
        if e164 is None:
            raise _invalid(["query", "phone"], "not a valid phone number")
    after_id = _decode_cursor(cursor) if cursor else None
    rows = await repository.list_callbacks(
        session,
        status=status,
        phone=e164,
        due_before=_aware(due_before) if due_before else None,
        after_id=after_id,
        limit=limit + 1,
    )
    page = list(rows[:limit])
    next_cursor = _encode_cursor(page[-1].id) if len(rows) > limit and page else None
    return CallbackList(items=[to_out(c) for c in page], next_cursor=next_cursor)
