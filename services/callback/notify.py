"""Messages to customers as rows: rendered now, sent by the worker, once per event and channel.

Each kind has its event key (`confirmation:<callback>:<request>`, `reminder:<callback>:<booking>`,
`tried:<callback>:<attempt>`, `cancelled:<callback>`, `rebooked:<callback>:<booking>`,
`acknowledgement:<request>`): the unique `(event_key, channel)` makes a second row for the same
event impossible, so nothing is ever sent twice for one event, whatever runs twice.

A kind is a pure function that renders a `Message`; `send` is the one path that turns messages
into rows (`_row` builds every row) and has them sent once the transaction commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import ceilings, queues, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import ERASED_RECIPIENT, Callback, Notification, NotificationKind
from services.callback.promise import promised_by_of
from services.callback.schemas import NotificationOut
from services.callback.selfservice import self_service_link
from services.callback.settings import CallbackSettings
from services.callback.templates import (
    Confirmation,
    render_acknowledgement,
    render_cancelled,
    render_confirmation,
    render_rebooked,
    render_reminder,
    render_stop_confirmed,
    render_tried,
)
from shared.contracts import Language
from shared.db import after_commit
from shared.errors import Conflict, NotFound
from shared.ids import new_id
from shared.phone import region_of
from shared.vocabulary import NotificationChannel, NotificationStatus

log = structlog.get_logger("ringback.callback")

# A caller that sends the rows due now itself claims them before they are written (the
# booking job: `tasks._SendHere.take_now`).
TakeNow = Callable[[Sequence[Notification], Callback, datetime], None]

_Kind = NotificationKind
_SMS, _EMAIL = NotificationChannel.SMS, NotificationChannel.EMAIL
# Messages that stop being true once something other than the customer closes the callback
# (a do-not-call entry, an answered inbound call).
UNSENT_AT_CLOSE = (
    _Kind.CONFIRMATION,
    _Kind.REMINDER,
    _Kind.TRIED,
    _Kind.REBOOKED,
    _Kind.AT_RISK_OFFER,
)

# Messages that wait out the queue's SMS quiet hours (§13). A confirmation, and a notice
# answering what the customer just did, answer their own contact and go at once.
WAITS_FOR_QUIET_HOURS = frozenset({_Kind.REMINDER, _Kind.TRIED, _Kind.SURVEY, _Kind.AT_RISK_OFFER})


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message about one callback, and the event it is sent for."""

    kind: NotificationKind
    event_key: str
    text: Confirmation
    # Of these, the ones the customer allows.
    channels: frozenset[NotificationChannel] = frozenset(NotificationChannel)
    # None: at once. A reminder waits for its time.
    send_at: datetime | None = None


def _language(callback: Callback) -> Language:
    return cast(Language, callback.language)


def _slot(callback: Callback) -> tuple[datetime, datetime] | None:
    if callback.slot_start is None or callback.slot_end is None:
        return None
    return callback.slot_start, callback.slot_end


def confirmation(
    settings: CallbackSettings,
    callback: Callback,
    *,
    event_key: str,
    now: datetime,
    zone: ZoneInfo,
) -> Message:
    text = render_confirmation(
        language=_language(callback),
        name=callback.name,
        phone=callback.phone,
        # Its promise: for a caller who asked in the phone queue, the time they heard (§11).
        deadline=promised_by_of(callback),
        now=now,
        tz=zone,
        link=self_service_link(settings, callback.id),
        slot=_slot(callback),
    )
    return Message(_Kind.CONFIRMATION, event_key, text)


def reminder(
    settings: CallbackSettings, callback: Callback, *, now: datetime, zone: ZoneInfo
) -> Message | None:
    """The reminder before a booked slot, due `reminder_minutes_before` it starts."""
    slot = _slot(callback)
    if settings.reminder_minutes_before <= 0 or slot is None:
        return None
    start, end = slot
    send_at = start - timedelta(minutes=settings.reminder_minutes_before)
    if send_at <= now:
        # Booked that close to the slot: the confirmation or notice is the reminder.
        return None
    text = render_reminder(
        language=_language(callback),
        name=callback.name,
        start=start,
        end=end,
        now=send_at,
        tz=zone,
        link=self_service_link(settings, callback.id),
    )
    key = f"reminder:{callback.id}:{callback.booking_seq}"
    return Message(_Kind.REMINDER, key, text, send_at=send_at)


def tried(
    settings: CallbackSettings,
    callback: Callback,
    *,
    attempt: int,
    next_try: datetime | None,
    now: datetime,
    zone: ZoneInfo,
) -> Message:
    text = render_tried(
        language=_language(callback),
        name=callback.name,
        next_try=next_try,
        now=now,
        tz=zone,
        link=self_service_link(settings, callback.id),
    )
    return Message(_Kind.TRIED, f"tried:{callback.id}:{attempt}", text, frozenset({_SMS}))


def cancelled(callback: Callback) -> Message:
    text = render_cancelled(language=_language(callback), name=callback.name)
    return Message(_Kind.CANCELLED, f"cancelled:{callback.id}", text)


def rebooked(
    settings: CallbackSettings, callback: Callback, *, now: datetime, zone: ZoneInfo
) -> Message:
    slot = _slot(callback)
    assert slot is not None
    text = render_rebooked(
        language=_language(callback),
        name=callback.name,
        start=slot[0],
        end=slot[1],
        now=now,
        tz=zone,
        link=self_service_link(settings, callback.id),
    )
    return Message(_Kind.REBOOKED, f"rebooked:{callback.id}:{callback.booking_seq}", text)


def _row(
    settings: CallbackSettings,
    *,
    callback_id: str | None,
    kind: NotificationKind,
    event_key: str,
    channel: NotificationChannel,
    recipient: str,
    text: Confirmation,
    send_at: datetime,
) -> Notification:
    """A queued message: every notification row is made here."""
    sms = channel == _SMS
    return Notification(
        id=new_id(),
        callback_id=callback_id,
        kind=kind,
        event_key=event_key,
        channel=channel,
        provider=settings.sms_provider if sms else settings.email_provider,
        status=NotificationStatus.QUEUED,
        recipient=recipient,
        subject=None if sms else text.email_subject,
        body=text.sms if sms else text.email_body,
        attempts=0,
        max_attempts=settings.notification_max_tries,
        next_attempt_at=send_at,
    )


@dataclass
class _Asked:
    """What the messages of one `send` need from the database, asked once for all of them:
    the keys written already, the do-not-call list, and (with their locks held) each
    recipient's messages today, kept up to date as rows are added."""

    used: set[str]
    do_not_call: bool
    counted: dict[tuple[NotificationChannel, str], int]

    def added(self, row: Notification) -> None:
        key = (NotificationChannel(row.channel), row.recipient)
        if key in self.counted:
            self.counted[key] += 1


def _wants_sms(callback: Callback, message: Message) -> bool:
    return _SMS in message.channels and callback.consent_sms and bool(message.text.sms)


def _wants_email(callback: Callback, message: Message) -> bool:
    # Only the email the callback was created with: one a later contact gave is unverified
    # and never gets the link (`creation._merge`).
    return _EMAIL in message.channels and bool(callback.email) and callback.consent_email


async def _ask(
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    messages: list[Message],
    *,
    now: datetime,
) -> _Asked:
    """Two round trips for any number of messages: the keys, the list and the ceilings'
    locks (SMS first, then email: one order everywhere), then the counts under them."""
    sms = any(_wants_sms(callback, message) for message in messages)
    email = callback.email if any(_wants_email(callback, m) for m in messages) else None
    locks = [ceilings.recipient_lock(_SMS, callback.phone)] if sms else []
    if email is not None:
        locks.append(ceilings.recipient_lock(_EMAIL, email))
    used, do_not_call = await repository.keys_used_and_do_not_call(
        session, [message.event_key for message in messages], callback.phone, locks=locks
    )
    owed = [message for message in messages if message.event_key not in used]
    recipients: list[tuple[NotificationChannel, str]] = []
    if (
        any(_wants_sms(callback, message) for message in owed)
        and not do_not_call
        and region_of(callback.phone) in settings.sms_allowed_regions
    ):
        recipients.append((_SMS, callback.phone))
    if email is not None and any(_wants_email(callback, message) for message in owed):
        recipients.append((_EMAIL, email))
    counted = await ceilings.count_sent_today(session, recipients, now=now) if recipients else {}
    return _Asked(used=used, do_not_call=do_not_call, counted=counted)


async def _rows(
    session: AsyncSession,
    *,
    settings: CallbackSettings,
    callback: Callback,
    message: Message,
    now: datetime,
    asked: _Asked,
    rules: queues.QueueRules | None = None,
) -> list[Notification]:
    """Rows for `message` on the channels the customer allows; none if its event has them."""
    if message.event_key in asked.used:
        return []

    send_at = message.send_at or now
    # Such an SMS waits out its queue's quiet hours (§13); an email goes when it is due.
    sms_at = send_at
    if message.kind in WAITS_FOR_QUIET_HOURS:
        if rules is None or rules.key != callback.queue:
            rules = await queues.rules(session, settings, callback.queue)
        sms_at = rules.sms_send_at(send_at)

    def row(channel: NotificationChannel, recipient: str) -> Notification:
        return _row(
            settings,
            callback_id=callback.id,
            kind=message.kind,
            event_key=message.event_key,
            channel=channel,
            recipient=recipient,
            text=message.text,
            send_at=sms_at if channel == _SMS else send_at,
        )

    def allowed(channel: NotificationChannel, recipient: str) -> Awaitable[bool]:
        return ceilings.message_allowed(
            session,
            settings,
            channel=channel,
            recipient=recipient,
            kind=message.kind,
            callback_id=callback.id,
            now=now,
            counted=asked.counted.get((channel, recipient)),
        )

    rows: list[Notification] = []
    if _wants_sms(callback, message):
        if region_of(callback.phone) not in settings.sms_allowed_regions:
            log.info("callback.notification.sms_region_blocked", callback_id=callback.id)
        elif asked.do_not_call:
            log.info("callback.notification.sms_do_not_call", callback_id=callback.id)
        elif await allowed(_SMS, callback.phone):
            rows.append(row(_SMS, callback.phone))
    if callback.email and _wants_email(callback, message) and await allowed(_EMAIL, callback.email):
        rows.append(row(_EMAIL, callback.email))
    # Counted at once, so the ceilings count them for the next message (`send` writes them).
    for added in rows:
        asked.added(added)
    return rows


async def send(
    session: AsyncSession,
    queue: NotificationQueue,
    *,
    settings: CallbackSettings,
    callback: Callback,
    messages: Iterable[Message | None],
    now: datetime,
    rules: queues.QueueRules | None = None,
    take_now: TakeNow | None = None,
) -> list[Notification]:
    """Add rows for these messages (a None is a message not owed) and send them after commit.

    `rules`: the callback's queue's, when the caller has read them already (a reminder's
    quiet hours need them; otherwise they are read here). `take_now`: a caller that sends the
    rows due now itself, after its commit, claims them before they are written."""
    owed = [message for message in messages if message is not None]
    rows: list[Notification] = []
    if owed:
        asked = await _ask(session, settings, callback, owed, now=now)
        for message in owed:
            rows += await _rows(
                session,
                settings=settings,
                callback=callback,
                message=message,
                now=now,
                asked=asked,
                rules=rules,
            )
        if take_now is not None:
            take_now(rows, callback, now)
        # Every message's rows in one statement.
        await repository.add_notifications(session, rows)
    enqueue_after_commit(session, queue, rows, now=now)
    return rows


async def acknowledgement(
    session: AsyncSession,
    queue: NotificationQueue,
    *,
    settings: CallbackSettings,
    request_id: str,
    email: str,
    language: Language,
    name: str | None,
    now: datetime,
) -> Notification | None:
    """The one email an email-only contact gets (it belongs to no callback), within ceilings."""
    allowed = await ceilings.message_allowed(
        session,
        settings,
        channel=_EMAIL,
        recipient=email,
        kind=_Kind.ACKNOWLEDGEMENT,
        callback_id=None,
        now=now,
    )
    if not allowed:
        return None
    row = _row(
        settings,
        callback_id=None,
        kind=_Kind.ACKNOWLEDGEMENT,
        event_key=f"acknowledgement:{request_id}",
        channel=_EMAIL,
        recipient=email,
        text=render_acknowledgement(language=language, name=name),
        send_at=now,
    )
    await repository.add_notifications(session, [row])
    enqueue_after_commit(session, queue, [row])
    return row


async def stop_confirmation(
    session: AsyncSession,
    queue: NotificationQueue,
    *,
    settings: CallbackSettings,
    phone: str,
    message_id: str,
    language: Language,
    name: str | None,
    now: datetime,
) -> Notification | None:
    """The SMS answering the STOP message `message_id` from `phone`. The caller sends it for
    the number's first STOP only; the key names the message, never the number, which erasure
    must be able to remove."""
    event_key = f"stop_confirmed:{message_id}"
    if region_of(phone) not in settings.sms_allowed_regions:
        return None
    if await repository.notifications_by_key(session, event_key):
        return None
    allowed = await ceilings.message_allowed(
        session,
        settings,
        channel=_SMS,
        recipient=phone,
        kind=_Kind.STOP_CONFIRMED,
        callback_id=None,
        now=now,
    )
    if not allowed:
        return None
    row = _row(
        settings,
        callback_id=None,
        kind=_Kind.STOP_CONFIRMED,
        event_key=event_key,
        channel=_SMS,
        recipient=phone,
        text=render_stop_confirmed(language=language, name=name),
        send_at=now,
    )
    await repository.add_notifications(session, [row])
    enqueue_after_commit(session, queue, [row])
    return row


async def cancel_unsent(session: AsyncSession, callback_id: str) -> None:
    """A callback closed by something other than the customer: its pending messages stop."""
    await repository.cancel_notifications(session, callback_id=callback_id, kinds=UNSENT_AT_CLOSE)


def enqueue_after_commit(
    session: AsyncSession,
    queue: NotificationQueue,
    rows: list[Notification],
    *,
    now: datetime | None = None,
) -> None:
    """Send these rows once the transaction has committed; a reminder, and a message held
    past `now` (quiet hours), wait for their time."""
    if not rows:
        return

    def waits(row: Notification) -> bool:
        if row.status == NotificationStatus.SENDING:  # claimed by the caller: sent now
            return False
        return row.kind == _Kind.REMINDER or (now is not None and row.next_attempt_at > now)

    now_ids = [r.id for r in rows if not waits(r)]
    later = [(r.id, r.next_attempt_at) for r in rows if waits(r)]

    async def enqueue() -> None:
        if now_ids:
            await queue.enqueue_notifications(now_ids)
        for notification_id, at in later:
            await queue.enqueue_notification_at(notification_id, at)

    after_commit(session, enqueue)


async def retry(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    notification_id: str,
    queue: NotificationQueue,
    now: datetime,
) -> NotificationOut:
    """Give a dead (or failing) notification a fresh budget of tries and queue it now."""
    row = await repository.lock_notification(session, notification_id)
    if row is None:
        raise NotFound("No notification has this id.")
    if row.status not in (NotificationStatus.DEAD, NotificationStatus.FAILED):
        raise Conflict(
            f"Only a dead or failed notification can be retried; this one is {row.status}."
        )
    if row.recipient == ERASED_RECIPIENT:
        raise Conflict("This notification's recipient was erased.")
    row.status = NotificationStatus.QUEUED
    row.max_attempts = row.attempts + settings.notification_max_tries
    row.next_attempt_at = now
    row.updated_at = now
    enqueue_after_commit(session, queue, [row])
    return NotificationOut.model_validate(row)
