"""Statistics (DESIGN §5, §9) over the contact log, bucketed in the site's time zone, or in
the queue's when the figures are one queue's.

Definitions (docs/history.md repeats them):

- contacts: inbound events, per channel; missed calls: `missed_call` events.
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
- demand: inbound contacts by local weekday (Monday first) and hour.

Filtered by queue and/or agent (§9), each figure counts the events that carry that queue or
agent (the columns ingest fills, `service.event_queue` and `service.event_agent`): contacts,
missed calls and demand the inbound events that name the queue; callbacks created, completed,
failed and expired their lifecycle events of that queue or agent; time to reach, the SLA
share and same-agent reaches the callbacks whose first closing event in the range is of that
queue or agent (by agent: the callbacks the agent closed). A callback's first contact and its
deadline are read from all of its events, whatever their queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.history import repository
from services.history.repository import StatsFilter
from services.history.schemas import (
    CallbackCounts,
    SlaShare,
    StatsBucket,
    StatsOut,
    TimeToReach,
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
# The events that end a callback for time to reach and the SLA share (cancelled: not counted).
_CLOSING = (EventType.CALLBACK_COMPLETED, EventType.CALLBACK_FAILED, EventType.CALLBACK_EXPIRED)


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


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile of `values` with linear interpolation between ranks."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


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
) -> StatsOut:
    """The figures of DESIGN §5 for [start, end), of the queue and agent `only` names."""
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
    by_hour = await repository.demand(session, start=start, end=end, tz=timezone, only=only)
    for weekday, hour, count in by_hour:
        grid[weekday - 1][hour] += count

    reach = await _reach(session, start=start, end=end, only=only)
    return StatsOut(
        from_=start,
        to=end,
        bucket=bucket,
        timezone=timezone,
        contacts=dict(sorted(contacts.items())),
        missed_calls=missed,
        callbacks=totals,
        buckets=list(buckets.values()),
        time_to_reach=reach.time_to_reach,
        sla=reach.sla,
        demand=grid,
        queue=only.queue,
        agent_id=only.agent_id,
        same_agent_reaches=reach.same_agent,
    )


@dataclass(frozen=True, slots=True)
class _Reach:
    time_to_reach: TimeToReach
    sla: SlaShare
    same_agent: int


async def _reach(
    session: AsyncSession, *, start: datetime, end: datetime, only: StatsFilter
) -> _Reach:
    closings = await repository.closing_events(
        session, start=start, end=end, types=_CLOSING, only=only
    )
    origins = await repository.callback_origins(session, [c.callback_id for c in closings])
    durations: list[float] = []
    closed = within = same_agent = 0
    for closing in closings:
        at = closing.occurred_at
        earliest, contact_texts, deadline_texts = origins.get(closing.callback_id, (at, [], []))
        reached = closing.type == EventType.CALLBACK_COMPLETED and closing.outcome in REACHED
        if reached:
            first = _parse(closing.first_contact_at)
            if first is None:
                candidates = [t for t in map(_parse, contact_texts) if t is not None]
                first = min(candidates) if candidates else earliest
            durations.append((at - first).total_seconds())
            same_agent += closing.same_agent
        deadline = _parse(closing.sla_deadline)
        if deadline is None:
            deadline = next((t for t in map(_parse, deadline_texts) if t is not None), None)
        if deadline is not None:
            closed += 1
            if reached and at <= deadline:
                within += 1
    return _Reach(
        time_to_reach=TimeToReach(
            count=len(durations),
            median_seconds=percentile(durations, 0.5),
            p90_seconds=percentile(durations, 0.9),
        ),
        sla=SlaShare(
            closed=closed, reached_within=within, share=within / closed if closed else None
        ),
        same_agent=same_agent,
    )
