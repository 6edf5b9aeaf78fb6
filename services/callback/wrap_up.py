"""Wrap-up (§10): the line's proposed attempt becomes final when the agent confirms or corrects
it, or by itself `RINGBACK_WRAP_UP_SECONDS` after the call; only then does it take effect."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import agents, queues, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Attempt, Callback
from services.callback.schemas import AttemptPatch, NextTry
from services.callback.settings import CallbackSettings
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.vocabulary import AttemptOutcome, CallbackStatus

log = structlog.get_logger("ringback.callback")


async def _attempt_of(session: AsyncSession, callback: Callback, attempt_id: str) -> Attempt:
    attempt = await repository.lock_attempt(session, callback.id, attempt_id)
    if attempt is None:
        raise NotFound("This callback has no attempt with this id.")
    return attempt


async def confirm(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    queue: NotificationQueue,
    callback_id: str,
    attempt_id: str,
    agent_id: str,
    patch: AttemptPatch,
    now: datetime | None = None,
) -> tuple[Attempt, Callback]:
    """The agent's word: the proposal as it is, or corrected (outcome, note, wrap-up code)."""
    now = now or utcnow()
    callback = await agents.claimed_by(session, callback_id, agent_id)
    attempt = await _attempt_of(session, callback, attempt_id)
    if attempt.final:
        raise Conflict(
            "This attempt is final already; record a new one if something else happened.",
            slug="attempt-final",
        )
    rules = await queues.rules(session, settings, callback.queue)
    outcome = patch.outcome or AttemptOutcome(attempt.outcome)
    agents.check_attempt(rules, outcome, patch.next, patch.wrap_up_code, now=now)
    if outcome != attempt.outcome:
        log.info(
            "callback.attempt.corrected",
            callback_id=callback.id,
            attempt=attempt.number,
            proposed=attempt.proposed_outcome,
            outcome=outcome,
        )
    attempt.outcome = outcome
    if patch.note is not None:
        attempt.note = patch.note
    if patch.wrap_up_code is not None:
        attempt.wrap_up_code = patch.wrap_up_code
    await _make_final(
        session, settings, queue, callback, attempt, rules, next_try=patch.next, now=now
    )
    return attempt, callback


async def finalize(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    queue: NotificationQueue,
    attempt_id: str,
    now: datetime | None = None,
) -> bool:
    """The wrap-up time is over and the agent said nothing: the proposal stands as it is."""
    now = now or utcnow()
    callback_id = await repository.callback_of_proposal(session, attempt_id)
    if callback_id is None:
        return False
    callback = await repository.lock_callback(session, callback_id)
    assert callback is not None
    attempt = await _attempt_of(session, callback, attempt_id)
    if attempt.final or attempt.finalize_at is None or attempt.finalize_at > now:
        return False
    rules = await queues.rules(session, settings, callback.queue)
    await _make_final(session, settings, queue, callback, attempt, rules, next_try=None, now=now)
    return True


async def _make_final(
    session: AsyncSession,
    settings: CallbackSettings,
    queue: NotificationQueue,
    callback: Callback,
    attempt: Attempt,
    rules: queues.QueueRules,
    *,
    next_try: NextTry | None,
    now: datetime,
) -> None:
    attempt.final = True
    attempt.finalized_at = now
    await session.flush()
    if callback.status == CallbackStatus.IN_PROGRESS and callback.agent_id == attempt.agent_id:
        await agents.take_effect(
            session=session,
            settings=settings,
            callback=callback,
            attempt=attempt,
            rules=rules,
            queue=queue,
            next_try=next_try,
            now=now,
        )
    else:
        # The claim moved on meanwhile (an operator released it): the try is on record, and
        # the callback is left where its new holder has it.
        log.warning("callback.attempt.final_without_effect", callback_id=callback.id)


async def due(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[str]:
    """Proposals whose wrap-up time is over (the sweep's safety net for lost jobs)."""
    return await repository.proposals_due(session, now=now, limit=limit)
