"""Messages to customers as rows: rendered now, sent by the worker, once per event and channel.

Each kind has its event key (`confirmation:<callback>:<request>`, `reminder:<callback>:<booking>`,
`tried:<callback>:<attempt>`, `cancelled:<callback>`, `rebooked:<callback>:<booking>`,
`acknowledgement:<request>`): the unique `(event_key, channel)` makes a second row for the same
event impossible, so nothing is ever sent twice for one event, whatever runs twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback, Notification
from services.callback.selfservice import self_service_link
from services.callback.settings import CallbackSettings
from services.callback.templates import (
    Confirmation,
    render_cancelled,
    render_confirmation,
    render_rebooked,
    render_reminder,
    render_tried,
)
from shared.contracts import Language
from shared.db import after_commit
from shared.ids import new_id
from shared.phone import region_of

log = structlog.get_logger("ringback.callback")

Channels = Literal["both", "sms", "email"]


def site_zone(settings: CallbackSettings, plan_zone: ZoneInfo | None = None) -> ZoneInfo:
    return plan_zone or ZoneInfo(settings.site_timezone)


async def add_messages(
    session: AsyncSession,
    *,
    settings: CallbackSettings,
    callback: Callback,
    kind: str,
    event_key: str,
    text: Confirmation,
    now: datetime,
    channels: Channels = "both",
    send_at: datetime | None = None,
) -> list[Notification]:
    """Rows for `text` on the channels the customer allows; none if this event has them already."""
    if await repository.notifications_by_key(session, event_key):
        return []
    common: dict[str, Any] = {
        "callback_id": callback.id,
        "kind": kind,
        "event_key": event_key,
        "status": "queued",
        "attempts": 0,
        "max_attempts": settings.notification_max_tries,
        "next_attempt_at": send_at or now,
    }
    rows: list[Notification] = []
    if channels in ("both", "sms") and callback.consent_sms and text.sms:
        if region_of(callback.phone) not in settings.sms_allowed_regions:
            log.info("callback.notification.sms_region_blocked", callback_id=callback.id)
        elif await repository.is_do_not_call(session, callback.phone):
            log.info("callback.notification.sms_do_not_call", callback_id=callback.id)
        else:
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
    if channels in ("both", "email") and callback.email and callback.consent_email:
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
    session.add_all(rows)
    return rows


def enqueue_after_commit(
    session: AsyncSession,
    queue: NotificationQueue,
    rows: list[Notification],
) -> None:
    """Send these rows once the transaction has committed (a reminder waits for its time)."""
    if not rows:
        return
    now_ids = [r.id for r in rows if r.kind != "reminder"]
    later = [(r.id, r.next_attempt_at) for r in rows if r.kind == "reminder"]

    async def enqueue() -> None:
        if now_ids:
            await queue.enqueue_notifications(now_ids)
        for notification_id, at in later:
            await queue.enqueue_notification_at(notification_id, at)

    after_commit(session, enqueue)


def _language(callback: Callback) -> Language:
    return cast(Language, callback.language)


async def confirmation(
    session: AsyncSession,
    *,
    settings: CallbackSettings,
    callback: Callback,
    event_key: str,
    now: datetime,
    zone: ZoneInfo,
) -> list[Notification]:
    slot = (
        (callback.slot_start, callback.slot_end)
        if callback.slot_start is not None and callback.slot_end is not None
        else None
    )
    text = render_confirmation(
        language=_language(callback),
        name=callback.name,
        phone=callback.phone,
        deadline=callback.sla_deadline,
        now=now,
        tz=zone,
        link=self_service_link(settings, callback.id),
        slot=slot,
    )
    return await add_messages(
        session,
        settings=settings,
        callback=callback,
        kind="confirmation",
        event_key=event_key,
        text=text,
        now=now,
    )


async def reminder(
    session: AsyncSession,
    *,
    settings: CallbackSettings,
    callback: Callback,
    now: datetime,
    zone: ZoneInfo,
) -> list[Notification]:
    """The reminder before a booked slot, due `reminder_minutes_before` it starts."""
    if (
        settings.reminder_minutes_before <= 0
        or callback.slot_start is None
        or callback.slot_end is None
    ):
        return []
    send_at = callback.slot_start - timedelta(minutes=settings.reminder_minutes_before)
    if send_at <= now:
        # Booked that close to the slot: the confirmation or notice is the reminder.
        return []
    text = render_reminder(
        language=_language(callback),
        name=callback.name,
        start=callback.slot_start,
        end=callback.slot_end,
        now=send_at,
        tz=zone,
        link=self_service_link(settings, callback.id),
    )
    return await add_messages(
        session,
        settings=settings,
        callback=callback,
        kind="reminder",
        event_key=f"reminder:{callback.id}:{callback.booking_seq}",
        text=text,
        now=now,
        send_at=send_at,
    )


async def tried(
    session: AsyncSession,
    *,
    settings: CallbackSettings,
    callback: Callback,
    attempt: int,
    next_try: datetime | None,
    now: datetime,
    zone: ZoneInfo,
) -> list[Notification]:
    text = render_tried(
        language=_language(callback),
        name=callback.name,
        next_try=next_try,
        now=now,
        tz=zone,
        link=self_service_link(settings, callback.id),
    )
    return await add_messages(
        session,
        settings=settings,
        callback=callback,
        kind="tried",
        event_key=f"tried:{callback.id}:{attempt}",
        text=text,
        now=now,
        channels="sms",
    )


async def cancelled(
    session: AsyncSession, *, settings: CallbackSettings, callback: Callback, now: datetime
) -> list[Notification]:
    text = render_cancelled(language=_language(callback), name=callback.name)
    return await add_messages(
        session,
        settings=settings,
        callback=callback,
        kind="cancelled",
        event_key=f"cancelled:{callback.id}",
        text=text,
        now=now,
    )


async def rebooked(
    session: AsyncSession,
    *,
    settings: CallbackSettings,
    callback: Callback,
    now: datetime,
    zone: ZoneInfo,
) -> list[Notification]:
    assert callback.slot_start is not None
    assert callback.slot_end is not None
    text = render_rebooked(
        language=_language(callback),
        name=callback.name,
        start=callback.slot_start,
        end=callback.slot_end,
        now=now,
        tz=zone,
        link=self_service_link(settings, callback.id),
    )
    return await add_messages(
        session,
        settings=settings,
        callback=callback,
        kind="rebooked",
        event_key=f"rebooked:{callback.id}:{callback.booking_seq}",
        text=text,
        now=now,
    )
