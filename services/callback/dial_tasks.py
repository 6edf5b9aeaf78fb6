"""The worker's jobs for dialing (§10): place a dial once, finish wrap-ups, sweep what was lost."""

from __future__ import annotations

from typing import Any

import structlog
from arq.connections import ArqRedis

from services.callback import dialing, wrap_up
from services.callback.jobs import ArqNotificationQueue
from services.callback.tasks import WorkerState, state_of
from shared.db import commit, utcnow

log = structlog.get_logger("ringback.callback")


async def place_dial(ctx: dict[str, Any], dial_id: str) -> str:
    """Ask the phone system to ring the agent; at most once, whatever happens to this job."""
    state = state_of(ctx)
    if state.dialer is None:
        log.warning("callback.dial.no_dialer", dial_id=dial_id)
        return "no dialer"
    async with state.sessions() as session:
        status = await dialing.place(
            session=session, settings=state.settings, dialer=state.dialer, dial_id=dial_id
        )
    state.metrics.dials.labels(status).inc()
    return str(status)


async def finalize_attempt(ctx: dict[str, Any], attempt_id: str) -> str:
    """The wrap-up time of a proposed attempt is over: it takes effect as proposed."""
    state = state_of(ctx)
    redis: ArqRedis = ctx["redis"]
    return "final" if await run_finalize(state, redis, attempt_id) else "not due"


async def run_finalize(state: WorkerState, redis: ArqRedis, attempt_id: str) -> bool:
    queue = ArqNotificationQueue(redis, queue_name=state.settings.queue_name)
    async with state.sessions() as session:
        done = await wrap_up.finalize(
            session=session, settings=state.settings, queue=queue, attempt_id=attempt_id
        )
        await commit(session)
    return done


async def sweep_dials(ctx: dict[str, Any]) -> int:
    """Cron: place dials whose job was lost, end silent ones, finish overdue wrap-ups."""
    state = state_of(ctx)
    redis: ArqRedis = ctx["redis"]
    queue = ArqNotificationQueue(redis, queue_name=state.settings.queue_name)
    now = utcnow()
    async with state.sessions() as session:
        unplaced, silent = await dialing.sweep(session=session, settings=state.settings, now=now)
        overdue = await wrap_up.due(session, now=now)
        await commit(session)
    for dial_id in unplaced:
        await queue.enqueue_dial(dial_id)
    finished = 0
    for attempt_id in overdue:
        finished += await run_finalize(state, redis, attempt_id)
    total = len(unplaced) + silent + finished
    if total:
        log.info("callback.dials.swept", unplaced=len(unplaced), silent=silent, finalized=finished)
    return total
