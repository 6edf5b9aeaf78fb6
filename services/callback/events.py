"""History events callback announces, written to its outbox in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import repository
from services.callback.models import Callback, CallbackOutbox, Notification
from shared.contracts import CallbackState, Channel, EventIn
from shared.db import utcnow
from shared.ids import new_id
from shared.outbox import enqueue, row_values
from shared.vocabulary import (
    CallbackStatus,
    ClosingOutcome,
    Direction,
    EventType,
    NotificationChannel,
)


def customer_of(callback: Callback) -> dict[str, Any]:
    return customer_fields(
        phone=callback.phone, language=callback.language, email=callback.email, name=callback.name
    )


def customer_fields(
    *, phone: str, language: str, email: str | None, name: str | None
) -> dict[str, Any]:
    """The event's `customer`: what history files it under, from a callback's own fields."""
    fields: dict[str, Any] = {"phone": phone, "language": language}
    if email:
        fields["email"] = email
    if name:
        fields["name"] = name
    return fields


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What a notification's event tells about it: ids and kinds, never the text."""

    notification_id: str
    kind: str
    channel: str
    attempts: int
    recipient: str


@dataclass(frozen=True, slots=True)
class MessageOwner:
    """The callback a message belongs to and its customer, as the message's event names them."""

    callback_id: str
    phone: str
    customer: dict[str, Any]


def where_it_stands(callback: Callback) -> CallbackState:
    """What history needs to show where a callback stands, on every lifecycle event."""
    return CallbackState(
        status=CallbackStatus(callback.status),
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        first_contact_at=callback.first_contact_at,
        agent_id=callback.agent_id,
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        contact_count=callback.contact_count,
        attempts=callback.attempt_count,
        outcome=ClosingOutcome(callback.outcome) if callback.outcome is not None else None,
        flag=callback.flag,
        queue=callback.queue,
        priority=callback.priority,
    )


async def emit(
    session: AsyncSession,
    *,
    customer: dict[str, Any],
    ordering_key: str,
    type: str,
    channel: Channel,
    direction: Direction,
    summary: str,
    data: dict[str, Any],
    subject_id: str | None = None,
    actor: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """Queue one event for history (validated against the contract now, not at delivery)."""
    event = _event(
        customer=customer,
        type=type,
        channel=channel,
        direction=direction,
        summary=summary,
        data=data,
        subject_id=subject_id,
        actor=actor,
        occurred_at=occurred_at,
    )
    await enqueue(
        session,
        CallbackOutbox,
        destination="history",
        path="/v1/events",
        payload=event,
        ordering_key=ordering_key,
    )
    return event.id


def _event(
    *,
    customer: dict[str, Any],
    type: str,
    channel: Channel,
    direction: Direction,
    summary: str,
    data: dict[str, Any],
    subject_id: str | None = None,
    actor: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> EventIn:
    return EventIn.model_validate(
        {
            "id": new_id(),
            "occurred_at": occurred_at or utcnow(),
            "channel": channel,
            "direction": direction,
            "type": type,
            "customer": customer,
            "subject": {"kind": "callback", "id": subject_id} if subject_id else None,
            "actor": actor or {"kind": "system"},
            "summary": summary,
            "data": data,
        }
    )


async def record(
    session: AsyncSession,
    *,
    callback: Callback,
    type: str,
    channel: Channel,
    direction: Direction,
    summary: str,
    data: dict[str, Any],
    actor: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """Queue one event about `callback`."""
    return await emit(
        session,
        customer=customer_of(callback),
        ordering_key=callback.phone,
        type=type,
        channel=channel,
        direction=direction,
        summary=summary,
        data=data,
        subject_id=callback.id,
        actor=actor,
        occurred_at=occurred_at,
    )


async def callback_changed(
    session: AsyncSession,
    *,
    callback: Callback,
    type: EventType,
    summary: str,
    actor: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A lifecycle event (`callback_created`, `callback_scheduled`, ...) with where it stands."""
    return await record(
        session,
        callback=callback,
        type=type,
        # Stored from the request's validated `channel`; EventIn checks it again.
        channel=cast(Channel, callback.channel),
        direction=Direction.INTERNAL,
        summary=summary,
        data={**where_it_stands(callback).model_dump(mode="json"), **(extra or {})},
        actor=actor,
    )


async def notification_result(
    session: AsyncSession, *, callback: Callback | None, notification: Notification, sent: bool
) -> str:
    """`notification_sent` / `notification_failed` for loaded rows (see `message_result`)."""
    message = SentMessage(
        notification_id=notification.id,
        kind=notification.kind,
        channel=notification.channel,
        attempts=notification.attempts,
        recipient=notification.recipient,
    )
    ref = None
    if callback is not None:
        ref = MessageOwner(
            callback_id=callback.id, phone=callback.phone, customer=customer_of(callback)
        )
    return await message_result(session, message=message, callback=ref, sent=sent)


async def message_result(
    session: AsyncSession, *, message: SentMessage, callback: MessageOwner | None, sent: bool
) -> str:
    """`notification_sent` / `notification_failed`: ids and kinds, never the text."""
    values = message_result_row(message=message, callback=callback, sent=sent)
    await repository.add_outbox_row(session, values)
    return str(values["payload"]["id"])


def message_result_row(
    *, message: SentMessage, callback: MessageOwner | None, sent: bool, now: datetime | None = None
) -> dict[str, Any]:
    """The outbox row (`shared.outbox.row_values`) of a message's `notification_sent` or
    `notification_failed` event, for a statement that writes it along with the result.
    `now`: the result's time (rows written in one statement share it)."""
    channel = Channel(message.channel)
    is_sms = message.channel == NotificationChannel.SMS
    what = f"{message.kind.capitalize()} {'SMS' if is_sms else 'email'}"
    data = {
        "notification_id": message.notification_id,
        "kind": message.kind,
        "channel": message.channel,
        "attempts": message.attempts,
    }
    if callback is not None:
        customer, ordering_key = callback.customer, callback.phone
    else:
        # A message that belongs to no callback (an acknowledgement): the recipient identifies.
        customer = {"phone": message.recipient} if is_sms else {"email": message.recipient}
        ordering_key = message.recipient
    event = _event(
        customer=customer,
        type=EventType.NOTIFICATION_SENT if sent else EventType.NOTIFICATION_FAILED,
        channel=channel,
        direction=Direction.OUTBOUND,
        summary=f"{what} sent" if sent else f"{what} could not be delivered",
        data=data,
        subject_id=callback.callback_id if callback is not None else None,
        occurred_at=now,
    )
    return row_values(
        destination="history",
        path="/v1/events",
        payload=event,
        ordering_key=ordering_key,
        now=now,
    )
