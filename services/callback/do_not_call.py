"""The do-not-call list: a number on it gets no callback and no SMS, and its open one ends."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, inputs, lifecycle, notify, repository
from services.callback.schemas import DoNotCallOut
from services.callback.settings import CallbackSettings
from shared.db import utcnow
from shared.vocabulary import CallbackStatus, ClosingOutcome


async def add(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    raw_phone: str,
    now: datetime | None = None,
) -> tuple[bool, DoNotCallOut]:
    """Put a number on the list; its open callbacks (in any queue) end without an SMS."""
    now = now or utcnow()
    phone = inputs.phone(raw_phone, settings, ["path", "phone"])
    await repository.lock(session, "phone", phone)
    created = await repository.add_do_not_call(session, phone, now)
    cancelled: list[str] = []
    for open_callback in await repository.open_for_phone(session, phone):
        await booking.release_if_ahead(session, open_callback, now=now)
        await lifecycle.transition(
            session,
            open_callback,
            CallbackStatus.CANCELLED,
            now=now,
            outcome=ClosingOutcome.DO_NOT_CALL,
            summary="Cancelled: the number was put on the do-not-call list",
        )
        await notify.cancel_unsent(session, open_callback.id)
        cancelled.append(open_callback.id)
    return created, DoNotCallOut(
        phone=phone,
        created_at=now,
        cancelled_callback_id=next(iter(cancelled), None),
        cancelled_callback_ids=cancelled,
    )


async def remove(*, session: AsyncSession, settings: CallbackSettings, raw_phone: str) -> bool:
    """Take a number off the list; False if it was not on it."""
    phone = inputs.phone(raw_phone, settings, ["path", "phone"])
    return await repository.remove_do_not_call(session, phone)
