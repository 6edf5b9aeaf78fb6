"""Erasure: forget a person across callback's schema, when history asks (DESIGN §5)."""

from __future__ import annotations

import secrets
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, lifecycle, repository, voicemails
from services.callback.models import Callback, ProcessedRequest
from services.callback.schemas import ErasureResult
from services.callback.settings import CallbackSettings
from shared.contracts import ErasureRequest
from shared.db import utcnow
from shared.phone import normalize
from shared.vocabulary import OPEN_STATUSES, CallbackStatus, ClosingOutcome

log = structlog.get_logger("ringback.callback")

_PII_KEYS = ("phone", "email", "name", "external_id")


def _forget_unverified(callback: Callback) -> None:
    callback.unverified_email = callback.unverified_name = callback.unverified_message = None
    callback.unverified_at = None


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
            # No history event: it would name the person history has just forgotten.
            await lifecycle.transition(
                session,
                callback,
                CallbackStatus.CANCELLED,
                now=now,
                outcome=ClosingOutcome.ERASED,
                summary="Cancelled: the person was erased",
                announce=False,
            )
            cancelled += 1
        placeholders.append(callback.phone)
        callback.phone = "#" + secrets.token_hex(7)
        callback.email = callback.name = callback.message = None
        _forget_unverified(callback)
        callback.erased_at = callback.updated_at = now
    # Someone whose email a later contact gave to another person's callback: forget what that
    # contact said, and leave the callback, which is not theirs, as it is.
    for callback in await repository.callbacks_with_unverified_email(session, emails):
        _forget_unverified(callback)
        callback.updated_at = now
    ids = [c.id for c in callbacks]
    # Before the numbers are gone from the voicemails' callbacks: found by number or callback.
    erased_voicemails, _ = await voicemails.erase(
        session=session, settings=settings, phones=phones, callback_ids=ids, now=now
    )
    notifications = await repository.erase_notifications(
        session, callback_ids=ids, recipients=[*phones, *emails]
    )
    attempts = await repository.erase_attempt_notes(session, ids)
    # A survey keeps the number and the comment; the score and who reached them stay for stats.
    await repository.erase_surveys(session, phones=phones, callback_ids=ids)
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
        voicemails=erased_voicemails,
    )
    session.add(
        ProcessedRequest(
            kind="erasure", key=data.id, result=result.model_dump(mode="json"), created_at=now
        )
    )
    log.info("callback.erased", erasure_id=data.id, callbacks=len(callbacks), outbox=len(rows))
    return result
