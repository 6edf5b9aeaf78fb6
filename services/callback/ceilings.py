"""Ceilings on what anyone who knows a phone number can make us send, and their refusals.

A contact request needs no more than a number and an email, so a stranger can point our SMS
at a victim's number (SMS pumping, harassment) or our mail at an address (email bombing).
Every message and every self-service rebook passes a ceiling here first:

- rebooks through the self-service link, per callback and per number per day;
- one "rebooked"/"cancelled" SMS per callback per cooldown;
- SMS per number and email per address per day, counting every kind of message.

A refusal is recorded (a `refusals` row naming the callback, never the recipient), logged
and counted (`ringback_refusals_total`); the configured ceilings are exported as
`ringback_ceiling`. Each ceiling is one setting of `CallbackSettings`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import repository
from services.callback.models import (
    Callback,
    Notification,
    NotificationKind,
    Refusal,
    SelfServiceChange,
)
from services.callback.settings import CallbackSettings
from shared.db import after_commit, commit
from shared.errors import TooManyRequests
from shared.ids import new_id
from shared.vocabulary import NotificationChannel

log = structlog.get_logger("ringback.callback.ceilings")

DAY = timedelta(days=1)
# The notices a customer's own change sends: one SMS of these per callback per cooldown.
NOTICE_KINDS = (NotificationKind.REBOOKED, NotificationKind.CANCELLED)
REBOOK = "rebook"


class RefusalReason(StrEnum):
    """Which ceiling refused (a `refusals.reason` and the metric's `reason` label)."""

    REBOOKS_PER_CALLBACK = "rebooks_per_callback"
    REBOOKS_PER_NUMBER = "rebooks_per_number"
    NOTICE_SMS_COOLDOWN = "notice_sms_cooldown"
    SMS_PER_NUMBER = "sms_per_number"
    EMAIL_PER_ADDRESS = "email_per_address"


# One counter for the process, registered in each registry that serves it (the API's and the
# worker's): refusals happen in both.
REFUSALS = Counter(
    "ringback_refusals_total",
    "Messages and self-service changes refused by a ceiling, by reason and channel.",
    ["reason", "channel"],
    registry=None,
)


class _Ceilings(Collector):
    """The configured ceilings as gauges, so an alert can compare a rate with its ceiling."""

    def __init__(self, settings: CallbackSettings) -> None:
        self.values = {
            "self_service_rebooks_per_callback_per_day": (
                settings.self_service_rebooks_per_callback_per_day
            ),
            "self_service_rebooks_per_number_per_day": (
                settings.self_service_rebooks_per_number_per_day
            ),
            "notice_sms_cooldown_minutes": settings.notice_sms_cooldown_minutes,
            "sms_per_number_per_day": settings.sms_per_number_per_day,
            "email_per_address_per_day": settings.email_per_address_per_day,
            "sends_per_api_key_per_hour": settings.sends_per_api_key_per_hour,
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ringback_ceiling", "The configured ceilings (RINGBACK_<NAME>).", labels=["name"]
        )
        for name, value in self.values.items():
            family.add_metric([name], value)
        yield family


def register(registry: CollectorRegistry, settings: CallbackSettings) -> None:
    """Serve the refusal counter and the ceilings from `registry`."""
    registry.register(REFUSALS)
    registry.register(_Ceilings(settings))


class TooManyChanges(TooManyRequests):
    slug = "too-many-changes"


def _refuse(
    session: AsyncSession,
    *,
    reason: RefusalReason,
    kind: str,
    channel: NotificationChannel | None,
    callback_id: str | None,
    now: datetime,
) -> None:
    session.add(
        Refusal(
            id=new_id(),
            callback_id=callback_id,
            reason=reason,
            kind=kind,
            channel=channel,
            created_at=now,
        )
    )
    log.info("callback.refused", reason=reason, kind=kind, channel=channel, callback_id=callback_id)

    async def count() -> None:
        REFUSALS.labels(reason=reason, channel=channel or "none").inc()

    after_commit(session, count)


# ----------------------------------------------------------------------------- messages


def recipient_lock(channel: NotificationChannel, recipient: str) -> tuple[str, str]:
    """The advisory lock (namespace, value) `message_allowed` holds while it counts: a caller
    that asks the database something first may take it in that round trip."""
    return (f"ceiling:{channel}", recipient)


async def message_allowed(
    session: AsyncSession,
    settings: CallbackSettings,
    *,
    channel: NotificationChannel,
    recipient: str,
    kind: NotificationKind,
    callback_id: str | None,
    now: datetime,
    counted: int | None = None,
) -> bool:
    """Whether one more `kind` message may go to `recipient`; a refusal is recorded.

    `counted`: the messages `recipient` has on `channel` today, this transaction's included,
    as `count_sent_today` found them and the caller kept up to date: a caller deciding
    several messages at once asks once."""
    # Counting and adding the row must not interleave with another transaction's for the
    # same recipient, or two could each see room for one and both send.
    await repository.lock(session, *recipient_lock(channel, recipient))
    reason = None
    if channel == NotificationChannel.SMS and kind in NOTICE_KINDS and callback_id is not None:
        if await _recent_notice_sms(session, settings, callback_id=callback_id, now=now):
            reason = RefusalReason.NOTICE_SMS_COOLDOWN
    if reason is None:
        ceiling, over = (
            (settings.sms_per_number_per_day, RefusalReason.SMS_PER_NUMBER)
            if channel == NotificationChannel.SMS
            else (settings.email_per_address_per_day, RefusalReason.EMAIL_PER_ADDRESS)
        )
        sent = await _sent_today(
            session, channel=channel, recipient=recipient, now=now, counted=counted
        )
        if sent >= ceiling:
            reason = over
    if reason is None:
        return True
    _refuse(session, reason=reason, kind=kind, channel=channel, callback_id=callback_id, now=now)
    return False


async def count_sent_today(
    session: AsyncSession, recipients: Sequence[tuple[NotificationChannel, str]], *, now: datetime
) -> dict[tuple[NotificationChannel, str], int]:
    """`_sent_today` for each (channel, recipient) in one round trip: `message_allowed`'s
    `counted`, for a caller that adds one to a recipient's figure for each row it adds.
    Asked with every recipient's lock held (`recipient_lock`), or another transaction may
    add a message after the count."""
    found = await repository.count_messages_to_each(session, recipients, since=now - DAY)
    return {
        (channel, recipient): found[(channel, recipient)] + _unflushed(session, channel, recipient)
        for channel, recipient in recipients
    }


async def _sent_today(
    session: AsyncSession,
    *,
    channel: NotificationChannel,
    recipient: str,
    now: datetime,
    counted: int | None,
) -> int:
    """Messages on `channel` written for `recipient` in the last day (cancelled ones aside)."""
    if counted is not None:
        return counted
    found = await repository.count_messages_to(
        session, channel=channel, recipient=recipient, since=now - DAY
    )
    return found + _unflushed(session, channel, recipient)


def _unflushed(session: AsyncSession, channel: NotificationChannel, recipient: str) -> int:
    """Rows added in this transaction and not yet flushed (a confirmation and its reminder)."""
    return sum(
        1
        for row in session.new
        if isinstance(row, Notification) and row.recipient == recipient and row.channel == channel
    )


async def _recent_notice_sms(
    session: AsyncSession, settings: CallbackSettings, *, callback_id: str, now: datetime
) -> bool:
    if settings.notice_sms_cooldown_minutes <= 0:
        return False
    since = now - timedelta(minutes=settings.notice_sms_cooldown_minutes)
    found = await repository.count_messages_of(
        session,
        callback_id=callback_id,
        channel=NotificationChannel.SMS,
        kinds=NOTICE_KINDS,
        since=since,
    )
    return found > 0


# ----------------------------------------------------------------------------- self-service


async def check_rebook(
    session: AsyncSession, settings: CallbackSettings, callback: Callback, *, now: datetime
) -> None:
    """Refuse (429) a self-service rebook past the daily caps; the refusal is kept.

    The refusal row is committed before the 429 is raised, since the error rolls back the
    request's unit of work and the record is the point.
    """
    reason = None
    if await _rebooks(session, now=now, callback_id=callback.id) >= (
        settings.self_service_rebooks_per_callback_per_day
    ):
        reason = RefusalReason.REBOOKS_PER_CALLBACK
    elif await _rebooks(session, now=now, phone=callback.phone) >= (
        settings.self_service_rebooks_per_number_per_day
    ):
        reason = RefusalReason.REBOOKS_PER_NUMBER
    if reason is None:
        return
    _refuse(session, reason=reason, kind=REBOOK, channel=None, callback_id=callback.id, now=now)
    await commit(session)
    raise TooManyChanges(
        "This callback has been changed as many times as it can be today; "
        "to change it again, please call us.",
        extra={"limit": reason},
    )


async def count_rebook(session: AsyncSession, callback: Callback, *, now: datetime) -> None:
    session.add(
        SelfServiceChange(id=new_id(), callback_id=callback.id, action=REBOOK, created_at=now)
    )
    # The view answered next reads how many are left.
    await session.flush()


async def rebooks_left(
    session: AsyncSession, settings: CallbackSettings, callback: Callback, *, now: datetime
) -> int:
    """How many more rebooks the link allows today (the smaller of the two caps)."""
    by_callback = settings.self_service_rebooks_per_callback_per_day - await _rebooks(
        session, now=now, callback_id=callback.id
    )
    by_number = settings.self_service_rebooks_per_number_per_day - await _rebooks(
        session, now=now, phone=callback.phone
    )
    return max(0, min(by_callback, by_number))


async def _rebooks(
    session: AsyncSession,
    *,
    now: datetime,
    callback_id: str | None = None,
    phone: str | None = None,
) -> int:
    return await repository.count_self_service_changes(
        session, action=REBOOK, since=now - DAY, callback_id=callback_id, phone=phone
    )
