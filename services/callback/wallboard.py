"""The wallboard (§13): one queue's figures for a room to watch, against the queue's goals."""

from __future__ import annotations

import asyncio
import time as monotonic
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import queues, repository, staffing
from services.callback.settings import CallbackSettings
from shared.db import utcnow
from shared.errors import NotFound
from shared.vocabulary import (
    AgentPresence,
    CallbackStatus,
    ClosingOutcome,
    GoalVerdict,
)

# "Due in the next hour": the deadlines the room can still keep this hour.
DUE_SOON = timedelta(hours=1)
# Amber below the goal by at most this much (5 points of share); red beyond it.
NEAR_MARGIN = 0.05
# The same 5 % of the scale for a 1-5 satisfaction average (its range is 4 wide).
CSAT_NEAR_MARGIN = 0.2
# The stream reads the figures this often and sends them when they changed: a change shows
# within this plus the send, well inside the 5 s §13 asks for. One small read per board.
REFRESH_SECONDS = 2.0
# A comment line this often keeps proxies from closing a quiet stream.
KEEP_ALIVE_SECONDS = 15.0
KEEP_ALIVE = b": keep-alive\n\n"

# As history's stats count the SLA share: of the callbacks closed as completed, failed or
# expired, those reached at or before their deadline. Cancelled callbacks are not counted.
_SLA_CLOSED = (CallbackStatus.COMPLETED, CallbackStatus.FAILED, CallbackStatus.EXPIRED)
_REACHED = (ClosingOutcome.REACHED, ClosingOutcome.REACHED_INBOUND)


class WaitingFigures(BaseModel):
    waiting: int = Field(description="Open callbacks no agent is working (overdue included)")
    overdue: int = Field(description="Waiting past the SLA deadline")
    due_next_hour: int = Field(description="Waiting, with the SLA deadline within the next hour")
    longest_wait_seconds: float | None = Field(
        description="Since first contact, of the callbacks to work now (overdue or due); "
        "null when there are none"
    )
    longest_waiting_since: datetime | None = Field(
        description="That callback's first contact: a page counts the wait on from it"
    )


class AgentFigures(BaseModel):
    """The queue's agents on the roster (§9), each counted once; offline ones are left out."""

    available: int
    on_callback: int = Field(description="Holding a claim (any queue's), or wrapping up")
    on_break: int


class SlaFigure(BaseModel):
    """Today's SLA share (in the queue's zone), beside the queue's goal."""

    closed: int
    reached_within: int
    share: float | None = Field(description="null until a callback has closed today")
    goal: float
    verdict: GoalVerdict | None


class CsatFigure(BaseModel):
    """Today's satisfaction (§13), as history's stats count it: the mean score of the surveys
    answered since midnight in the queue's zone; null until one is."""

    average: float | None = None
    responses: int = 0
    goal: float | None
    verdict: GoalVerdict | None = None


class Wallboard(BaseModel):
    queue: str
    as_of: datetime
    day_start: datetime = Field(description="Midnight in the queue's zone: where today starts")
    timezone: str
    waiting: WaitingFigures
    agents: AgentFigures
    sla: SlaFigure
    csat: CsatFigure
    promises_at_risk: int = Field(description="Open callbacks the at-risk job (§14) marks late")


def verdict(
    value: float | None, goal: float | None, margin: float = NEAR_MARGIN
) -> GoalVerdict | None:
    """Met at or above the goal, near within `margin` below it, else missed."""
    if value is None or goal is None:
        return None
    if value >= goal:
        return GoalVerdict.MET
    return GoalVerdict.NEAR if value >= goal - margin else GoalVerdict.MISSED


def day_start(now: datetime, zone: ZoneInfo) -> datetime:
    """The last local midnight before `now` in `zone`, in UTC."""
    return datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone).astimezone(UTC)


async def _waiting(session: AsyncSession, key: str, now: datetime) -> WaitingFigures:
    waiting, overdue, due_soon, since = await repository.wallboard_waiting(
        session, key, now=now, due_soon=DUE_SOON
    )
    return WaitingFigures(
        waiting=waiting,
        overdue=overdue,
        due_next_hour=due_soon,
        longest_wait_seconds=max(0.0, (now - since).total_seconds()) if since else None,
        longest_waiting_since=since,
    )


async def _agents(session: AsyncSession, key: str, now: datetime) -> AgentFigures:
    roster, claims = await repository.wallboard_roster_and_claims(session, key, now=now)
    holding = {agent_id for agent_id, _ in claims if agent_id}
    on_call = available = on_break = 0
    for agent_id, presence in roster:
        if agent_id in holding or presence == AgentPresence.WRAP_UP:
            on_call += 1
        elif presence == AgentPresence.AVAILABLE:
            available += 1
        elif presence == AgentPresence.BREAK:
            on_break += 1
    # An agent the roster does not know is served from every queue (§9): on a callback here
    # when it holds one of this queue's.
    known = {agent_id for agent_id, _ in roster}
    on_call += len({a for a, queue in claims if a and queue == key and a not in known})
    return AgentFigures(available=available, on_callback=on_call, on_break=on_break)


async def _sla(session: AsyncSession, key: str, since: datetime, now: datetime) -> tuple[int, int]:
    return await repository.wallboard_sla(
        session, key, since=since, now=now, closed=_SLA_CLOSED, reached=_REACHED
    )


async def _csat(
    session: AsyncSession, key: str, since: datetime, now: datetime, goal: float | None
) -> CsatFigure:
    responses, average = await repository.wallboard_csat(session, key, since=since, now=now)
    return CsatFigure(
        average=average,
        responses=responses,
        goal=goal,
        verdict=verdict(average, goal, CSAT_NEAR_MARGIN),
    )


async def _at_risk(session: AsyncSession, key: str) -> int:
    return await repository.wallboard_at_risk(session, key)


async def wallboard(
    *, session: AsyncSession, settings: CallbackSettings, key: str, now: datetime | None = None
) -> Wallboard:
    """The figures of queue `key` at `now`; 404 for a queue that does not exist."""
    queue = await repository.get_queue(session, key)
    if queue is None and key != queues.DEFAULT:
        raise NotFound(f"No queue {key!r}.")
    moment = now or utcnow()
    rules = queues.rules_of(queue, settings)
    since = day_start(moment, rules.zone)
    closed, within = await _sla(session, key, since, moment)
    share = within / closed if closed else None
    goal = staffing.goal_of(queue, rules).share
    goals = (queue.config.get("goals") if queue is not None else None) or {}
    return Wallboard(
        queue=rules.key,
        as_of=moment,
        day_start=since,
        timezone=queues.zone_name(queue, settings),
        waiting=await _waiting(session, key, moment),
        agents=await _agents(session, key, moment),
        sla=SlaFigure(
            closed=closed,
            reached_within=within,
            share=share,
            goal=goal,
            verdict=verdict(share, goal),
        ),
        csat=await _csat(session, key, since, moment, goals.get("csat_average")),
        promises_at_risk=await _at_risk(session, key),
    )


def _changed_part(board: Wallboard) -> str:
    # The clock moves `as_of` and the longest wait every read; the page counts the wait on
    # from `longest_waiting_since`, so neither alone is worth an event.
    return board.model_dump_json(exclude={"as_of": True, "waiting": {"longest_wait_seconds"}})


def sse(board: Wallboard) -> bytes:
    return f"event: wallboard\ndata: {board.model_dump_json()}\n\n".encode()


async def stream(
    *,
    sessions: async_sessionmaker[AsyncSession],
    settings: CallbackSettings,
    key: str,
    first: Wallboard,
    still_admitted: Callable[[], Awaitable[bool]],
    refresh_seconds: float = REFRESH_SECONDS,
) -> AsyncIterator[bytes]:
    """The figures now, then again each time they change; ends when the key stops admitting."""
    retry_ms = int(refresh_seconds * 1000)
    yield f"retry: {retry_ms}\n".encode() + sse(first)
    last = _changed_part(first)
    recheck_every = max(1.0, settings.api_key_cache_seconds)
    recheck_at = monotonic.monotonic() + recheck_every
    quiet_since = monotonic.monotonic()
    while True:
        await asyncio.sleep(refresh_seconds)
        if monotonic.monotonic() >= recheck_at:
            if not await still_admitted():
                return
            recheck_at = monotonic.monotonic() + recheck_every
        async with sessions() as session:
            try:
                board = await wallboard(session=session, settings=settings, key=key)
            except NotFound:  # the queue was deleted while the board watched it
                return
        now_part = _changed_part(board)
        if now_part != last:
            last = now_part
            quiet_since = monotonic.monotonic()
            yield sse(board)
        elif monotonic.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
            quiet_since = monotonic.monotonic()
            yield KEEP_ALIVE
