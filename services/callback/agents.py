"""Agents working the queue: claims as leases, attempts and the retry policy, and the clock
(leases that run out, callbacks nobody worked before their deadline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, events, lifecycle, notify, repository
from services.callback.capacity import next_business_moment
from services.callback.jobs import NotificationQueue
from services.callback.models import Attempt, Callback
from services.callback.settings import CallbackSettings
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.vocabulary import AttemptOutcome, CallbackStatus, ClosingOutcome, EventType

log = structlog.get_logger("ringback.callback")

# Outcomes that call for another try, and those that end the callback at once.
RETRY_OUTCOMES = frozenset(
    {AttemptOutcome.NO_ANSWER, AttemptOutcome.BUSY, AttemptOutcome.VOICEMAIL}
)
FINAL_FAILURES = frozenset({AttemptOutcome.WRONG_NUMBER, AttemptOutcome.DECLINED})


def _agent(agent_id: str) -> dict[str, Any]:
    return {"kind": "agent", "id": agent_id}


async def claim_next(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    agent_id: str,
    now: datetime | None = None,
) -> Callback | None:
    """Hand the most urgent due callback to `agent_id` alone; None when nothing is due."""
    now = now or utcnow()
    callback = await repository.claim_next(session, now=now)
    if callback is None:
        return None
    previous_agent = callback.agent_id if callback.status == CallbackStatus.IN_PROGRESS else None
    if previous_agent is not None:
        # The last agent's lease ran out: the callback goes back to the queue first, on record.
        await _return_to_queue(session, callback, now=now)
    lifecycle.check(callback, CallbackStatus.IN_PROGRESS)
    callback.agent_id = agent_id
    callback.lease_expires_at = now + timedelta(minutes=settings.claim_lease_minutes)
    await lifecycle.transition(
        session,
        callback,
        CallbackStatus.IN_PROGRESS,
        now=now,
        summary=f"Claimed by agent {agent_id}",
        actor=_agent(agent_id),
        extra={"lease_expires_at": callback.lease_expires_at.isoformat()},
    )
    log.info("callback.claimed", callback_id=callback.id, agent_id=agent_id)
    return callback


async def _return_to_queue(session: AsyncSession, callback: Callback, *, now: datetime) -> None:
    target = CallbackStatus.SCHEDULED if callback.slot_start is not None else CallbackStatus.PENDING
    agent = callback.agent_id
    await lifecycle.transition(
        session,
        callback,
        target,
        now=now,
        summary="Back in the queue: the agent's claim ran out",
        extra={"reason": "lease_expired", "previous_agent_id": agent},
    )


async def _claimed_by(session: AsyncSession, callback_id: str, agent_id: str) -> Callback:
    callback = await repository.lock_callback(session, callback_id)
    if callback is None:
        raise NotFound("No callback has this id.")
    if callback.status != CallbackStatus.IN_PROGRESS or callback.agent_id != agent_id:
        raise Conflict(
            "Only the agent holding the claim on this callback may do this.",
            slug="not-claimant",
            extra={"current_status": callback.status},
        )
    return callback


async def renew_lease(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    agent_id: str,
    now: datetime | None = None,
) -> Callback:
    """Extend the claim; 409 unless `agent_id` still holds it (a lapsed one not yet retaken
    counts as held)."""
    now = now or utcnow()
    callback = await _claimed_by(session, callback_id, agent_id)
    callback.lease_expires_at = now + timedelta(minutes=settings.claim_lease_minutes)
    callback.updated_at = now
    return callback


def retry_delay(settings: CallbackSettings, tries_done: int) -> timedelta:
    """Wait after try number `tries_done` (1-based); the last listed wait repeats."""
    delays = settings.retry_delays_minutes
    return timedelta(minutes=delays[min(tries_done, len(delays)) - 1])


@dataclass(frozen=True, slots=True)
class RecordedAttempt:
    """A try as recorded, and its callback as the try left it."""

    attempt: Attempt
    callback: Callback


async def record_attempt(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    agent_id: str,
    outcome: AttemptOutcome,
    note: str | None,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> RecordedAttempt:
    """Record a try and move the callback on: completed, retried later, or failed.

    - `reached` completes it;
    - `no_answer`/`busy`/`voicemail` with tries left: back to `pending`, due after the next
      wait of the retry policy moved into business hours, and a "we tried to reach you" SMS;
    - the same on the last try: `failed` (`attempts_exhausted`), with a last SMS;
    - `wrong_number`/`declined`: `failed` at once, no SMS (the number is not the customer's,
      or they said no).
    """
    now = now or utcnow()
    callback = await _claimed_by(session, callback_id, agent_id)
    number = await repository.next_attempt_number(session, callback.id)
    callback.attempt_count = number
    attempt = Attempt(
        callback_id=callback.id,
        number=number,
        agent_id=agent_id,
        outcome=outcome,
        note=note,
        created_at=now,
    )
    session.add(attempt)
    actor = _agent(agent_id)
    plan = await booking.load_plan(session)
    zone = booking.zone_of(plan, settings)
    message: notify.Message | None = None
    closing = outcome == AttemptOutcome.REACHED or outcome in FINAL_FAILURES
    if closing or (outcome in RETRY_OUTCOMES and number >= settings.retry_max_tries):
        # The try is an event of its own, written before the one that closes the callback, so
        # the closing event is the last word on where it stands.
        await _attempted(session, callback, number, outcome, actor)
    if outcome == AttemptOutcome.REACHED:
        await booking.release_if_ahead(session, callback, now=now)
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.COMPLETED,
            now=now,
            outcome=ClosingOutcome.REACHED,
            summary="Completed: the customer was reached",
            actor=actor,
            extra={"attempt": number},
        )
    elif outcome in FINAL_FAILURES:
        await booking.release_if_ahead(session, callback, now=now)
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.FAILED,
            now=now,
            outcome=ClosingOutcome(outcome),
            summary=f"Failed: {outcome.replace('_', ' ')}",
            actor=actor,
            extra={"attempt": number},
        )
    elif number >= settings.retry_max_tries:
        await booking.release_if_ahead(session, callback, now=now)
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.FAILED,
            now=now,
            outcome=ClosingOutcome.ATTEMPTS_EXHAUSTED,
            summary=f"Failed: not reached in {number} tries",
            actor=actor,
            extra={"attempt": number, "last_outcome": outcome},
        )
        message = notify.tried(
            settings, callback, attempt=number, next_try=None, now=now, zone=zone
        )
    else:
        next_try = now + retry_delay(settings, number)
        if plan is not None:
            next_try = next_business_moment(plan, next_try)
        attempt.next_attempt_at = next_try
        await booking.release(session, callback, now=now)
        callback.due_at = next_try
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.PENDING,
            now=now,
            event_type=EventType.CALLBACK_ATTEMPTED,
            summary=f"Not reached ({outcome.replace('_', ' ')}); next try scheduled",
            actor=actor,
            extra={"attempt": number, "attempt_outcome": outcome},
        )
        message = notify.tried(
            settings, callback, attempt=number, next_try=next_try, now=now, zone=zone
        )
    await notify.send(
        session, queue, settings=settings, callback=callback, messages=[message], now=now
    )
    await session.flush()
    log.info(
        "callback.attempt.recorded",
        callback_id=callback.id,
        attempt=number,
        outcome=outcome,
        status=callback.status,
    )
    return RecordedAttempt(attempt=attempt, callback=callback)


async def _attempted(
    session: AsyncSession,
    callback: Callback,
    number: int,
    outcome: AttemptOutcome,
    actor: dict[str, Any],
) -> None:
    await events.callback_changed(
        session,
        callback=callback,
        type=EventType.CALLBACK_ATTEMPTED,
        summary=f"Try {number}: {outcome.replace('_', ' ')}",
        actor=actor,
        extra={"attempt": number, "attempt_outcome": outcome},
    )


async def release_lapsed_leases(
    *, session: AsyncSession, now: datetime | None = None, limit: int = 500
) -> int:
    """Return callbacks whose claim ran out to the queue (the claim query also does, lazily)."""
    now = now or utcnow()
    callbacks = await repository.lapsed_leases(session, now=now, limit=limit)
    for callback in callbacks:
        await _return_to_queue(session, callback, now=now)
    return len(callbacks)


async def expire_overdue(
    *, session: AsyncSession, now: datetime | None = None, limit: int = 500
) -> list[str]:
    """Waiting callbacks nobody worked by their deadline: `expired`, an SLA breach."""
    now = now or utcnow()
    callbacks = await repository.past_deadline(session, now=now, limit=limit)
    for callback in callbacks:
        await booking.release_if_ahead(session, callback, now=now)
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.EXPIRED,
            now=now,
            outcome=ClosingOutcome.SLA_BREACHED,
            summary="Expired: not worked before the deadline (SLA breach)",
            extra={"sla_breach": True},
        )
    return [c.id for c in callbacks]
