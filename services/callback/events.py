"""History events callback announces, written to its outbox in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback.models import Callback, CallbackOutbox, Notification
from shared.contracts import Channel, EventIn
from shared.db import utcnow
from shared.ids import new_id
from shared.outbox import enqueue


def _customer(callback: Callback) -> dict[str, Any]:
    customer: dict[str, Any] = {"phone": callback.phone, "language": callback.language}
    if callback.email:
        customer["email"] = callback.email
    if callback.name:
        customer["name"] = callback.name
    return customer


async def record(
    session: AsyncSession,
    *,
    callback: Callback,
    type: str,
    channel: Channel,
    direction: str,
    summary: str,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
) -> str:
    """Queue one event for history (validated against the contract now, not at delivery)."""
    event = EventIn.model_validate(
        {
            "id": new_id(),
            "occurred_at": occurred_at or utcnow(),
            "channel": channel,
            "direction": direction,
            "type": type,
            "customer": _customer(callback),
            "subject": {"kind": "callback", "id": callback.id},
            "actor": {"kind": "system"},
            "summary": summary,
            "data": data,
        }
    )
    await enqueue(
        session,
        CallbackOutbox,
        destination="history",
        path="/v1/events",
        payload=event.model_dump(mode="json", exclude_none=True),
        ordering_key=callback.phone,
    )
    return event.id


async def callback_changed(
    session: AsyncSession, *, callback: Callback, type: str, summary: str
) -> str:
    """`callback_created` / `callback_merged` with where the callback stands."""
    return await record(
        session,
        callback=callback,
        type=type,
        # Stored from the request's validated `channel`; EventIn checks it again.
        channel=cast(Channel, callback.channel),
        direction="internal",
        summary=summary,
        data={
            "status": callback.status,
            "due_at": callback.due_at.isoformat(),
            "sla_deadline": callback.sla_deadline.isoformat(),
            "contact_count": callback.contact_count,
        },
    )


async def notification_result(
    session: AsyncSession, *, callback: Callback, notification: Notification, sent: bool
) -> str:
    """`notification_sent` / `notification_failed`: ids and kinds, never the text."""
    channel: Channel = "sms" if notification.channel == "sms" else "email"
    what = f"{notification.kind.capitalize()} {'SMS' if channel == 'sms' else 'email'}"
    return await record(
        session,
        callback=callback,
        type="notification_sent" if sent else "notification_failed",
        channel=channel,
        direction="outbound",
        summary=f"{what} sent" if sent else f"{what} could not be delivered",
        data={
            "notification_id": notification.id,
            "kind": notification.kind,
            "channel": notification.channel,
            "attempts": notification.attempts,
        },
    )
