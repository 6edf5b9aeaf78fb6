"""Cancelling a callback on request (an agent's or the customer's): seat back, customer told."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, lifecycle, notify, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback
from services.callback.settings import CallbackSettings
from shared.db import utcnow
from shared.errors import NotFound
from shared.vocabulary import CallbackStatus, ClosingOutcome

_OUTCOME = {
    "agent": ClosingOutcome.CANCELLED_BY_AGENT,
    "customer": ClosingOutcome.CANCELLED_BY_CUSTOMER,
}


async def cancel(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    queue: NotificationQueue,
    by: Literal["agent", "customer"],
    notify_customer: bool = True,
    actor: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Callback:
    """Cancel an open callback (409 if closed), give back its seat, tell the customer."""
    now = now or utcnow()
    callback = await repository.lock_callback(session, callback_id)
    if callback is None:
        raise NotFound("No callback has this id.")
    lifecycle.check(callback, CallbackStatus.CANCELLED)
    await booking.release_if_ahead(session, callback, now=now)
    await lifecycle.transition(
        session,
        callback,
        CallbackStatus.CANCELLED,
        now=now,
        outcome=_OUTCOME[by],
        summary=f"Cancelled by the {by}",
        actor=actor,
    )
    if notify_customer:
        await notify.send(
            session,
            queue,
            settings=settings,
            callback=callback,
            messages=[notify.cancelled(callback)],
            now=now,
        )
    return callback
