"""Agents working the queue: claims as leases, attempts and the retry policy, and the clock
(leases that run out, callbacks nobody worked before their deadline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import (
    booking,
    events,
    inputs,
    lifecycle,
    notify,
    queues,
    repository,
    roster,
    survey,
)
from services.callback.capacity import next_business_moment
from services.callback.jobs import NotificationQueue
from services.callback.models import Attempt, Callback
from services.callback.schemas import NextTry
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
    """Hand the most urgent due callback routing allows to `agent_id` alone (§9); None when
    nothing is due for them."""
    now = now or utcnow()
    route = await roster.route_for(session, agent_id)
    condition = repository.routed_to(
        agent_id=agent_id,
        queues=route.queues,
        languages=route.languages,
        language_wait_minutes=settings.language_wait_minutes,
        now=now,
    )
    callback = await repository.claim_next(session, now=now, route=condition)
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


async def claimed_by(session: AsyncSession, callback_id: str, agent_id: str) -> Callback:
    callback = await repository.lock_callback(session, callback_id)
    if callback is None:
        raise NotFound("No callback has this id.")
    if callback.status != CallbackStatus.IN_PROGRESS:
        raise Conflict(
            f"This callback is {callback.status}, not claimed: claim it first "
            "(POST /v1/queue/claim); only the agent holding the claim may do this.",
            slug="not-claimant",
            extra={"current_status": callback.status},
        )
    if callback.agent_id != agent_id:
        raise Conflict(
            "Another agent holds the claim on this callback; only they may do this.",
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
    callback = await claimed_by(session, callback_id, agent_id)
    callback.lease_expires_at = now + timedelta(minutes=settings.claim_lease_minutes)
    callback.updated_at = now
    return callback


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
    next_try: NextTry | None = None,
    wrap_up_code: str | None = None,
    now: datetime | None = None,
) -> RecordedAttempt:
    """Record a try the agent reports by hand: final at once, and it takes effect
    (`take_effect`)."""
    now = now or utcnow()
    callback = await claimed_by(session, callback_id, agent_id)
    await refuse_while_wrapping_up(session, callback.id)
    rules = await queues.rules(session, settings, callback.queue)
    check_attempt(rules, outcome, next_try, wrap_up_code, now=now)
    attempt = await new_attempt(
        session,
        callback,
        agent_id=agent_id,
        outcome=outcome,
        note=note,
        wrap_up_code=wrap_up_code,
        now=now,
    )
    await take_effect(
        session=session,
        settings=settings,
        callback=callback,
        attempt=attempt,
        rules=rules,
        queue=queue,
        next_try=next_try,
        now=now,
    )
    return RecordedAttempt(attempt=attempt, callback=callback)


async def refuse_while_wrapping_up(session: AsyncSession, callback_id: str) -> None:
    """409 while the line's proposal for the last call waits for the agent's word (§10)."""
    pending = await repository.open_proposal(session, callback_id)
    if pending is not None:
        raise Conflict(
            "The last call's outcome is still a proposal: confirm or correct it first "
            f"(PATCH /v1/callbacks/{callback_id}/attempts/{pending.id}).",
            slug="wrap-up-pending",
            extra={"attempt_id": pending.id},
        )


async def new_attempt(
    session: AsyncSession,
    callback: Callback,
    *,
    agent_id: str,
    outcome: AttemptOutcome,
    note: str | None,
    wrap_up_code: str | None,
    now: datetime,
    final: bool = True,
    finalize_at: datetime | None = None,
    dial_id: str | None = None,
) -> Attempt:
    """The attempt row, numbered; a proposal (`final` false) changes nothing else yet."""
    number = await repository.next_attempt_number(session, callback.id)
    callback.attempt_count = number
    attempt = Attempt(
        callback_id=callback.id,
        number=number,
        agent_id=agent_id,
        outcome=outcome,
        wrap_up_code=wrap_up_code,
        note=note,
        final=final,
        finalize_at=finalize_at,
        finalized_at=now if final else None,
        proposed_outcome=outcome if dial_id is not None else None,
        dial_id=dial_id,
        created_at=now,
    )
    session.add(attempt)
    await session.flush()
    return attempt


async def take_effect(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    attempt: Attempt,
    rules: queues.QueueRules,
    queue: NotificationQueue,
    next_try: NextTry | None,
    now: datetime,
) -> None:
    """Move the callback on by a final try: completed, retried later, or failed.

    - `reached` completes it;
    - `no_answer`/`busy`/`voicemail` with tries left: back to `pending`, due after the queue's
      wait for that outcome moved into its hours (or at `next.at`, as agreed), and a "we tried
      to reach you" SMS;
    - the same on the last try: `failed` (`attempts_exhausted`), with a last SMS;
    - `rescheduled` ("call me tomorrow at 10"): due at `next.at` exactly, no SMS, and not a
      try toward `max_tries`;
    - `wrong_number`/`declined`: `failed` at once, no SMS (the number is not the customer's,
      or they said no).

    `next.owner` keeps the callback for this agent until `owner_until` (§9).
    """
    outcome = AttemptOutcome(attempt.outcome)
    number = attempt.number
    agent_id = attempt.agent_id
    # Tries toward `max_tries`: every final attempt but a rescheduling, this one included.
    tries = await repository.tries_made(session, callback.id)
    actor = _agent(agent_id)
    zone = rules.zone
    message: notify.Message | None = None
    closing = outcome == AttemptOutcome.REACHED or outcome in FINAL_FAILURES
    exhausted = outcome in RETRY_OUTCOMES and tries >= rules.max_tries
    if closing or exhausted:
        # The try is an event of its own, written before the one that closes the callback, so
        # the closing event is the last word on where it stands.
        await _attempted(session, callback, attempt, actor)
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
            extra={
                "attempt": number,
                "same_agent": await _spoke_before(session, callback, agent_id),
            },
        )
        await survey.schedule(
            session,
            queue,
            settings=settings,
            callback=callback,
            rules=rules,
            agent_id=agent_id,
            now=now,
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
    elif exhausted:
        await booking.release_if_ahead(session, callback, now=now)
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.FAILED,
            now=now,
            outcome=ClosingOutcome.ATTEMPTS_EXHAUSTED,
            summary=f"Failed: not reached in {tries} tries",
            actor=actor,
            extra={"attempt": number, "last_outcome": outcome},
        )
        message = notify.tried(
            settings, callback, attempt=number, next_try=None, now=now, zone=zone
        )
    else:
        if next_try is not None:
            # What was agreed with the customer (or the agent's own plan), exactly.
            due = next_try.at
        else:
            due = now + rules.retry_wait(outcome, tries)
            if rules.plan is not None:
                due = next_business_moment(rules.plan, due)
        attempt.next_attempt_at = due
        await booking.release(session, callback, now=now)
        callback.due_at = due
        if next_try is not None and next_try.owner:
            callback.owner_agent_id = agent_id
            callback.owner_until = due + timedelta(minutes=settings.owner_minutes)
        rescheduled = outcome == AttemptOutcome.RESCHEDULED
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.PENDING,
            now=now,
            event_type=EventType.CALLBACK_ATTEMPTED,
            summary=(
                "Rescheduled with the customer"
                if rescheduled
                else f"Not reached ({outcome.replace('_', ' ')}); next try scheduled"
            ),
            actor=actor,
            extra=_attempt_extra(attempt),
        )
        if not rescheduled:
            message = notify.tried(
                settings, callback, attempt=number, next_try=due, now=now, zone=zone
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


def _attempt_extra(attempt: Attempt) -> dict[str, Any]:
    extra: dict[str, Any] = {"attempt": attempt.number, "attempt_outcome": attempt.outcome}
    if attempt.dial_id is not None:
        # Dialed through the phone system: what the line said, and whether the agent changed it.
        extra["dial_id"] = attempt.dial_id
        extra["proposed_outcome"] = attempt.proposed_outcome
    return extra


def check_attempt(
    rules: queues.QueueRules,
    outcome: AttemptOutcome,
    next_try: NextTry | None,
    wrap_up_code: str | None,
    *,
    now: datetime,
) -> None:
    if outcome == AttemptOutcome.RESCHEDULED and next_try is None:
        raise inputs.invalid(["body", "next"], "a rescheduled try needs next.at, the agreed time")
    if next_try is not None:
        if outcome not in RETRY_OUTCOMES and outcome != AttemptOutcome.RESCHEDULED:
            raise inputs.invalid(["body", "next"], f"a {outcome} try has no next try")
        if next_try.at <= now:
            raise inputs.invalid(["body", "next", "at"], "must be in the future")
    if wrap_up_code is not None and wrap_up_code not in rules.wrap_up_codes:
        known = ", ".join(sorted(rules.wrap_up_codes)) or "none"
        raise inputs.invalid(
            ["body", "wrap_up_code"],
            f"not one of queue {rules.key!r}'s wrap-up codes ({known})",
        )


async def _spoke_before(session: AsyncSession, callback: Callback, agent_id: str) -> bool:
    """Whether `agent_id` is the agent the customer last spoke with about this callback: the
    one who agreed a time with them (and kept it), or who took it for themself."""
    last = await repository.last_conversation_agent(session, callback.id)
    return agent_id in {last, callback.owner_agent_id} - {None}


async def _attempted(
    session: AsyncSession, callback: Callback, attempt: Attempt, actor: dict[str, Any]
) -> None:
    await events.callback_changed(
        session,
        callback=callback,
        type=EventType.CALLBACK_ATTEMPTED,
        summary=f"Try {attempt.number}: {attempt.outcome.replace('_', ' ')}",
        actor=actor,
        extra=_attempt_extra(attempt),
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
