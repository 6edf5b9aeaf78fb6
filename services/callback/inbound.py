"""Contacts that reach callback another way: an answered inbound call, an email-only contact."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, inputs, lifecycle, notify, queues, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback, ProcessedRequest
from services.callback.schemas import AcknowledgementResult, AnsweredCallResult
from services.callback.settings import CallbackSettings
from shared.contracts import Acknowledgement, AnsweredCall
from shared.db import utcnow
from shared.phone import normalize
from shared.vocabulary import CallbackStatus, ClosingOutcome


async def answered_call(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: AnsweredCall,
    now: datetime | None = None,
) -> AnsweredCallResult:
    """The customer got through another way: their open callback is completed."""
    now = now or utcnow()
    phone = inputs.phone(data.phone, settings, ["body", "phone"])
    await repository.lock(session, "answered", data.request_id)
    previous = await repository.get_processed(session, "answered_call", data.request_id)
    if previous is not None:
        return AnsweredCallResult.model_validate(previous.result)
    result = AnsweredCallResult(status="disabled")
    if settings.complete_on_inbound_answer:
        await repository.lock(session, "phone", phone)
        dialed = normalize(data.dialed, settings.default_region) if data.dialed else None
        # Only the call's own queue: another team's promise to this customer still stands.
        choice = await queues.choose(session, named=data.queue, dialed=dialed, phone=phone)
        callback = await session.get(Callback, choice.open_id) if choice.open_id else None
        result = AnsweredCallResult(status="no_open_callback")
        if callback is not None:
            await booking.release_if_ahead(session, callback, now=now)
            await lifecycle.transition(
                session,
                callback,
                CallbackStatus.COMPLETED,
                now=now,
                outcome=ClosingOutcome.REACHED_INBOUND,
                summary="Completed: the customer got through on an inbound call",
                extra={"inbound_id": data.inbound_id, "answered_at": data.occurred_at.isoformat()},
            )
            await notify.cancel_unsent(session, callback.id)
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
    row = await notify.acknowledgement(
        session,
        queue,
        settings=settings,
        request_id=data.request_id,
        email=data.email.lower(),
        language=data.language or settings.default_language,
        name=data.name,
        now=now,
    )
    result = (
        AcknowledgementResult(status="queued", notification_id=row.id)
        if row is not None
        else AcknowledgementResult(status="ceiling_reached")
    )
    session.add(
        ProcessedRequest(
            kind="acknowledgement",
            key=data.request_id,
            result=result.model_dump(mode="json"),
            created_at=now,
        )
    )
    await session.flush()
    return True, result
