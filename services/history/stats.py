"""Statistics (DESIGN §5, §9) over the contact log, bucketed in the site's time zone, or in
the queue's when the figures are one queue's.

Definitions (docs/history.md repeats them):

- contacts: inbound events but survey answers (a reply to our question asks for nothing),
  per channel; missed calls: `missed_call` events.
- callbacks created / completed / failed / expired: distinct callbacks with such an event
  in the bucket.
- time to reach: for each callback whose first closing event in the range is
  `callback_completed` with outcome `reached` or `reached_inbound`, the completion time
  minus the callback's first contact: `data.first_contact_at` of the completion event,
  else the earliest `first_contact_at` on any of the callback's events, else the callback's
  earliest event (its `callback_created`, written when the first contact arrived).
  Median and p90 interpolate linearly between ranks (PostgreSQL's `percentile_cont`).
- SLA share: of the callbacks closed in the range as completed, failed or expired whose
  SLA deadline is known (`data.sla_deadline` of the closing event, else the latest one on
  the callback's events), the share reached (as above) at or before the deadline.
  Cancelled callbacks are not counted.
- same-agent reaches: the reaches counted in time to reach whose completion event says
  `same_agent: true`.
- demand: contacts by local weekday (Monday first) and hour.
- SLA share per bucket: as above, of the callbacks whose closing event falls in the bucket.
- the figures against a queue's goals (§13), for the range, per agent and per local day:
  `goals` defines them. A callback's figures go to the agent and the day of its closing
  event; attempts and surveys to their own event's agent and day (a survey names the agent
  of the callback in `data.agent_id`).

Filtered by queue and/or agent (§9), each figure counts the events that carry that queue or
agent (the columns ingest fills, `service.event_queue` and `service.event_agent`): contacts,
missed calls and demand the inbound events that name the queue; callbacks created, completed,
failed and expired their lifecycle events of that queue or agent; time to reach, the SLA
share and same-agent reaches the callbacks whose first closing event in the range is of that
queue or agent (by agent: the callbacks the agent closed). A callback's first contact and its
deadline are read from all of its events, whatever their queue.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.history import goals as goal_figures
from services.history import repository
from services.history.goals import NO_GOALS, Closed, Tally, new_tally
from services.history.goals import percentile as percentile
from services.history.repository import StatsFilter
from services.history.schemas import (
    AgentPerformance,
    CallbackCounts,
    DayPerformance,
    GoalsSet,
    SlaShare,
    StatsBucket,
    StatsOut,
)
from shared.errors import Unprocessable
from shared.query_times import local_day_start
from shared.vocabulary import ClosingOutcome, Direction, EventType

MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=366)}
REACHED = frozenset({ClosingOutcome.REACHED, ClosingOutcome.REACHED_INBOUND})
# Which of `CallbackCounts`' fields each counted lifecycle event adds to.
_CALLBACK_FIELD: dict[str, str] = {
    EventType.CALLBACK_CREATED: "created",
    EventType.CALLBACK_COMPLETED: "completed",
    EventType.CALLBACK_FAILED: "failed",
    EventType.CALLBACK_EXPIRED: "expired",
}
# Inbound events that are not contacts: the customer answers our question, asks for nothing.
_NOT_CONTACTS = (EventType.SURVEY_ANSWERED,)
# The events that end a callback. Time to reach, the SLA share and the reach rate leave the
# cancelled ones out (`goals.measure`); abandonment counts them.
_CLOSING = (
    EventType.CALLBACK_COMPLETED,
    EventType.CALLBACK_FAILED,
    EventType.CALLBACK_EXPIRED,
    EventType.CALLBACK_CANCELLED,
)


class _Discard:
    def __init__(self) -> None:
        self.contacts: dict[str, int] = {}
        self.missed_calls = 0
        self.callbacks = CallbackCounts()


def _problem(msg: str, field: str) -> Unprocessable:
    return Unprocessable(msg, extra={"errors": [{"loc": ["query", field], "msg": msg}]})


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def bucket_starts(start: datetime, end: datetime, unit: str, zone: ZoneInfo) -> list[datetime]:
    """UTC instants of the site-local hour or day boundaries covering [start, end)."""
    local = start.astimezone(zone)
    if unit == "hour":
        first = local.replace(minute=0, second=0, microsecond=0)
        current = first.astimezone(UTC)
        out = []
        while current < end:
            out.append(current)
            current += timedelta(hours=1)
        return out
    day = local.date()
    out = []
    while True:
        boundary = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
        if boundary >= end:
            return out
        out.append(boundary)
        day += timedelta(days=1)


def _next_boundary(at: datetime, unit: str, zone: ZoneInfo) -> datetime:
    if unit == "hour":
        return at + timedelta(hours=1)
    day = at.astimezone(zone).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def period(
    start: datetime | None, end: datetime | None, *, timezone: str, now: datetime
) -> tuple[datetime, datetime]:
    """`[from, to)` as asked, each bound left out taken from today in `timezone`.

    Today is the whole local day, midnight to midnight, rather than midnight to now: the
    same question asked twice in a day gets buckets that line up, and the hours still to
    come simply count nothing yet.
    """
    zone = ZoneInfo(timezone)
    if start is None:
        start = local_day_start(now, zone)
    if end is None:
        end = local_day_start(now, zone, days_after=1)
    return start, end


def check_range(start: datetime, end: datetime, bucket: Literal["hour", "day"]) -> None:
    """Refuse, as a 422, a range that is empty, backwards or too long for the bucket."""
    if end <= start:
        raise _problem("`to` must be after `from`.", "to")
    if end - start > MAX_RANGE[bucket]:
        days = MAX_RANGE[bucket].days
        raise _problem(f"At most {days} days with bucket={bucket}.", "to")


def check_filter(only: StatsFilter) -> None:
    """Refuse, as a 422, a filter no stored event could match because PostgreSQL can't take it."""
    for field, value in (("queue", only.queue), ("agent_id", only.agent_id)):
        if value is not None and "\x00" in value:
            raise _problem("NUL characters are not allowed.", field)


async def statistics(
    *,
    session: AsyncSession,
    start: datetime,
    end: datetime,
    bucket: Literal["hour", "day"],
    timezone: str,
    only: StatsFilter = repository.ALL_EVENTS,
    goals: GoalsSet = NO_GOALS,
) -> StatsOut:
    """The figures of DESIGN §5 and §13 for [start, end), of the queue and agent `only`
    names, measured against `goals`."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    check_range(start, end, bucket)
    check_filter(only)
    zone = ZoneInfo(timezone)
    starts = bucket_starts(start, end, bucket, zone)
    buckets = {
        at: StatsBucket(
            start=at,
            end=_next_boundary(at, bucket, zone),
            local_start=at.astimezone(zone).isoformat(),
            contacts={},
            missed_calls=0,
            callbacks=CallbackCounts(),
        )
        for at in starts
    }
    contacts: dict[str, int] = {}
    missed = 0
    totals = CallbackCounts()
    rows = await repository.bucket_counts(
        session,
        start=start,
        end=end,
        unit=bucket,
        tz=timezone,
        types=[EventType.MISSED_CALL, *_CALLBACK_FIELD],
        only=only,
        not_contacts=_NOT_CONTACTS,
    )
    for at, channel, direction, type_, events, subjects in rows:
        # Always one of ours; a zone whose rules the database knows otherwise is not lost.
        target = buckets.get(at.astimezone(UTC)) or _Discard()
        if direction == Direction.INBOUND:
            target.contacts[channel] = target.contacts.get(channel, 0) + events
            contacts[channel] = contacts.get(channel, 0) + events
        if type_ == EventType.MISSED_CALL:
            target.missed_calls += events
            missed += events
        field = _CALLBACK_FIELD.get(type_)
        if field:
            setattr(target.callbacks, field, getattr(target.callbacks, field) + subjects)
            setattr(totals, field, getattr(totals, field) + subjects)

    grid = [[0] * 24 for _ in range(7)]
    by_hour = await repository.demand(
        session, start=start, end=end, tz=timezone, only=only, not_contacts=_NOT_CONTACTS
    )
    for weekday, hour, count in by_hour:
        grid[weekday - 1][hour] += count

    closed = await _closed(session, start=start, end=end, only=only)
    closed_in: list[list[Closed]] = [[] for _ in starts]
    for one in closed:
        closed_in[_index(starts, one.occurred_at)].append(one)
    whole = Tally(closed=closed)
    days = bucket_starts(start, end, "day", zone)
    by_agent, by_day = await _tallies(
        session, whole, days, start=start, end=end, timezone=timezone, only=only
    )
    performance = goal_figures.measure(whole, goals)
    return StatsOut(
        from_=start,
        to=end,
        bucket=bucket,
        timezone=timezone,
        contacts=dict(sorted(contacts.items())),
        missed_calls=missed,
        callbacks=totals,
        buckets=list(buckets.values()),
        time_to_reach=performance.time_to_reach,
        sla=_sla_share(closed),
        sla_by_bucket=[_sla_share(some) for some in closed_in],
        demand=grid,
        queue=only.queue,
        agent_id=only.agent_id,
        same_agent_reaches=performance.same_agent.same_agent,
        goals=goals,
        performance=performance,
        performance_by_agent=[
            AgentPerformance(agent_id=agent, **goal_figures.measure(tally, goals).model_dump())
            for agent, tally in sorted(by_agent.items())
        ],
        performance_by_day=[
            DayPerformance(
                start=at,
                end=_next_boundary(at, "day", zone),
                local_date=at.astimezone(zone).date().isoformat(),
                **goal_figures.measure(by_day.get(i) or new_tally(), goals).model_dump(),
            )
            for i, at in enumerate(days)
        ],
    )


def _index(starts: list[datetime], at: datetime) -> int:
    """The bucket of `starts` holding `at` (the first for anything before it)."""
    return max(bisect_right(starts, at.astimezone(UTC)) - 1, 0)


def _sla_share(closed: list[Closed]) -> SlaShare:
    within, counted = goal_figures.answered_within(goal_figures.without_cancelled(closed), None)
    return SlaShare(
        closed=counted, reached_within=within, share=within / counted if counted else None
    )


async def _closed(
    session: AsyncSession, *, start: datetime, end: datetime, only: StatsFilter
) -> list[Closed]:
    """The callbacks first closed in the range, with their time to reach and deadline."""
    closings = await repository.closing_events(
        session, start=start, end=end, types=_CLOSING, only=only
    )
    origins = await repository.callback_origins(session, [c.callback_id for c in closings])
    out = []
    for closing in closings:
        at = closing.occurred_at
        earliest, contact_texts, deadline_texts = origins.get(closing.callback_id, (at, [], []))
        reached = closing.type == EventType.CALLBACK_COMPLETED and closing.outcome in REACHED
        seconds = None
        if reached:
            first = _parse(closing.first_contact_at)
            if first is None:
                candidates = [t for t in map(_parse, contact_texts) if t is not None]
                first = min(candidates) if candidates else earliest
            seconds = (at - first).total_seconds()
        deadline = _parse(closing.sla_deadline)
        if deadline is None:
            deadline = next((t for t in map(_parse, deadline_texts) if t is not None), None)
        out.append(
            Closed(
                type=closing.type,
                occurred_at=at,
                outcome=closing.outcome,
                agent_id=closing.agent_id,
                reached=reached,
                seconds_to_reach=seconds,
                deadline=deadline,
                same_agent=bool(reached and closing.same_agent),
            )
        )
    return out


async def _tallies(
    session: AsyncSession,
    whole: Tally,
    days: list[datetime],
    *,
    start: datetime,
    end: datetime,
    timezone: str,
    only: StatsFilter,
) -> tuple[dict[str, Tally], dict[int, Tally]]:
    """Attempts and surveys added to `whole`, and everything split per agent and per local
    day (by index in `days`)."""
    by_agent: dict[str, Tally] = {}
    by_day: dict[int, Tally] = {}

    def groups(at: datetime, agent: str | None) -> list[Tally]:
        out = [whole, by_day.setdefault(_index(days, at), new_tally())]
        if agent is not None:
            out.append(by_agent.setdefault(agent, new_tally()))
        return out

    for one in whole.closed:
        for tally in groups(one.occurred_at, one.agent_id)[1:]:
            tally.closed.append(one)
    attempts = await repository.counts_by_day_and_agent(
        session, start=start, end=end, tz=timezone, only=only, type_=EventType.CALLBACK_ATTEMPTED
    )
    for day, agent, count in attempts:
        for tally in groups(day, agent):
            tally.attempts += count
    answers = await repository.survey_answers(
        session, start=start, end=end, tz=timezone, only=only, answered=EventType.SURVEY_ANSWERED
    )
    for day, agent, count, scores in answers:
        for tally in groups(day, agent):
            tally.responses += count
            tally.score_sum += scores
    sent = await repository.surveys_sent(
        session,
        start=start,
        end=end,
        tz=timezone,
        only=only,
        sent=EventType.SURVEY_SENT,
        answered=EventType.SURVEY_ANSWERED,
    )
    for day, agent, count, answered in sent:
        for tally in groups(day, agent):
            tally.surveys_sent += count
            tally.surveys_answered += answered
    return by_agent, by_day
