"""Staffing from observed demand (§14): forecast, handle time, agents needed and planned.

`GET /v1/queues/{key}/staffing` and `ringback staffing show` read this. The arithmetic lives
in `forecast.py`, `erlang.py` and `simulation.py`; here are the database reads that feed it
and the choice between the two models: a first-in-first-out simulation of the forecast day
for callback windows, Erlang C in closed form where the window is at most 3x the handle time
(a callback offered to a caller in the phone queue), where the two agree.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import erlang, forecast, inputs, queues, repository
from services.callback.capacity import WEEKDAYS, CapacityPlan
from services.callback.models import Queue
from services.callback.settings import CallbackSettings
from services.callback.simulation import HOUR, needed_for_day, simulated_days
from shared.errors import NotFound

# The handle time until a queue has its own (§11: 6 minutes), and the days it is measured over.
DEFAULT_HANDLE_SECONDS = 360.0
HANDLE_DAYS = 14
# The answer-within share when the queue sets no goal.
DEFAULT_SLA_SHARE = 0.8
# Where the window is at most this many handle times, Erlang C answers in closed form.
ERLANG_WINDOW_HANDLES = 3
# Simulated days per forecast day: enough that the answer moves by at most an agent between
# seeds (see tests/callback/test_erlang.py), few enough for a week in a second.
REPLICATIONS = 12
# The longest range one request may ask for.
MAX_DAYS = 31


@dataclass(frozen=True, slots=True)
class Goal:
    """What the queue promises: `share` of callbacks started within `window_seconds`."""

    window_seconds: float
    share: float


def goal_of(queue: Queue | None, rules: queues.QueueRules) -> Goal:
    """The queue's `goals` (§13), else its SLA and an 80 % share."""
    goals = (queue.config.get("goals") if queue is not None else None) or {}
    minutes = goals.get("answer_within_minutes")
    share = goals.get("sla_share")
    return Goal(
        window_seconds=minutes * 60.0 if minutes else rules.sla.total_seconds(),
        share=share if share is not None else DEFAULT_SLA_SHARE,
    )


# ----------------------------------------------------------------------------- reads


async def observed_handle_seconds(session: AsyncSession, queue: str, *, now: datetime) -> float:
    """The mean time an attempt keeps an agent, ringing and wrap-up included, over 14 days.

    Measured on dialed attempts (§10), from the dial's start until the attempt became final
    (the agent confirmed it, or the wrap-up time ran out): an attempt typed in by hand has no
    start to measure from. Until a queue has one, `DEFAULT_HANDLE_SECONDS`.
    """
    mean = await repository.mean_dialed_handle_seconds(
        session, queue=queue, since=now - timedelta(days=HANDLE_DAYS)
    )
    return mean if mean is not None and mean > 0 else DEFAULT_HANDLE_SECONDS


async def planned_share(session: AsyncSession, queue: str) -> float:
    """How much of a planned agent this queue gets: an agent in n queues counts 1/n in each."""
    shares = [1.0 / serves for serves, _ in await repository.agents_serving(session, queue)]
    return sum(shares) / len(shares) if shares else 1.0


# ----------------------------------------------------------------------------- the answer


class StaffingHour(BaseModel):
    """One local hour of the queue: demand, the agents it needs and those the plan has."""

    start: datetime
    local_hour: str
    forecast: float
    handle_seconds: float
    needed: int
    # The plan's agents in this hour, each counted by the share of their time this queue gets.
    planned: float
    # `needed - planned`: agents missing (negative: to spare).
    gap: float


class StaffingNow(BaseModel):
    """The promises at risk in the next hours and the agents now that would keep them."""

    at_risk: int
    horizon_minutes: int
    more_agents: int
    available_agents: float
    summary: str


class StaffingOut(BaseModel):
    queue: str
    timezone: str
    weeks: int
    # `simulation` (first in, first out) or `erlang_c` (window <= 3x the handle time).
    method: Literal["simulation", "erlang_c"]
    answer_within_minutes: float
    sla_share: float
    handle_seconds: float
    # The share of a planned agent's time this queue gets: the mean of 1/n over the rostered
    # agents who serve it (n: the queues each serves); 1 when the roster names nobody here.
    planned_share: float
    hours: list[StaffingHour]
    now: StaffingNow | None = None


def hour_is_open(plan: CapacityPlan | None, day: date, hour: int) -> bool:
    """Whether local `hour` of `day` overlaps the plan's business hours (no plan: always)."""
    if plan is None:
        return True
    start, end = hour * 60, hour * 60 + 60
    for interval in plan.intervals_on(day):
        opens = int(interval.start[:2]) * 60 + int(interval.start[3:])
        closes = int(interval.end[:2]) * 60 + int(interval.end[3:])
        if opens < end and closes > start:
            return True
    return False


def planned_at(plan: CapacityPlan | None, day: date, hour: int) -> int:
    """Agents the plan has in local `hour` of `day` (0 outside business hours)."""
    if plan is None or not hour_is_open(plan, day, hour):
        return 0
    return plan.agents_at(day, hour)


def method_for(goal: Goal, handle_seconds: float) -> Literal["simulation", "erlang_c"]:
    if goal.window_seconds <= ERLANG_WINDOW_HANDLES * handle_seconds:
        return "erlang_c"
    return "simulation"


def needed_on_day(
    day_forecast: Sequence[float],
    open_hours: Sequence[bool],
    *,
    handle_seconds: float,
    goal: Goal,
    seed: int,
) -> list[int]:
    """Agents needed in each local hour of one day (closed hours need none).

    Demand in a closed hour is work at the next opening of the day: it is added to that
    hour's forecast. Demand after the day's last opening is the next morning's work.
    """
    moved = [0.0] * len(day_forecast)
    carried = 0.0
    for hour, amount in enumerate(day_forecast):
        if open_hours[hour]:
            moved[hour], carried = amount + carried, 0.0
        else:
            carried += amount
    if method_for(goal, handle_seconds) == "erlang_c":
        return [
            erlang.agents_needed(
                rate * handle_seconds / HOUR,
                handle_seconds=handle_seconds,
                target_seconds=goal.window_seconds,
                share=goal.share,
            )
            if open_hours[hour]
            else 0
            for hour, rate in enumerate(moved)
        ]
    days = simulated_days(
        moved, handle_seconds=handle_seconds, replications=REPLICATIONS, seed=seed
    )
    return needed_for_day(
        days,
        moved,
        handle_seconds=handle_seconds,
        window_seconds=goal.window_seconds,
        share=goal.share,
        open_hours=open_hours,
    )


def local_hours(day: date, zone: ZoneInfo) -> list[tuple[int, datetime]]:
    """The wall-clock hours that exist on `day` in `zone`, with their UTC start."""
    hours = []
    for hour in range(24):
        start = datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)
        # A wall time the spring change skips comes back as another hour: it does not exist.
        if start.astimezone(zone).hour == hour:
            hours.append((hour, start))
    return hours


async def staffing(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    key: str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    weeks: int = forecast.WEEKS,
) -> StaffingOut:
    """The staffing table for the local hours that start in `[start, end)` (default today)."""
    queue = await repository.get_queue(session, key)
    if queue is None and key != queues.DEFAULT:
        raise NotFound(f"No queue is called {key!r}.")
    rules = queues.rules_of(queue, settings)
    zone = rules.zone
    start = start or datetime.combine(now.astimezone(zone).date(), time(), zone)
    start = start.astimezone(UTC)
    end = (end or start + timedelta(days=1)).astimezone(UTC)
    if end <= start:
        raise inputs.invalid(["query", "to"], "`to` must be after `from`")
    if end - start > timedelta(days=MAX_DAYS):
        raise inputs.invalid(["query", "to"], f"ask for at most {MAX_DAYS} days at a time")
    goal = goal_of(queue, rules)
    handle = await observed_handle_seconds(session, key, now=now)
    share = await planned_share(session, key)

    first_day = start.astimezone(zone).date()
    last_day = (end - timedelta(microseconds=1)).astimezone(zone).date()
    history_from = datetime.combine(first_day - timedelta(weeks=weeks, days=1), time(), UTC)
    history_to = datetime.combine(last_day, time(), UTC) + timedelta(days=2)
    counts = forecast.count_by_hour(
        await repository.demand_moments(session, queue=key, since=history_from, until=history_to),
        zone,
    )
    observed = await repository.first_contact_in(session, key)
    since = observed.astimezone(zone).date() if observed is not None else None

    hours: list[StaffingHour] = []
    day = first_day
    while day <= last_day:
        expected = forecast.forecast_day(counts, day, weeks=weeks, observed_since=since)
        open_hours = [hour_is_open(rules.plan, day, h) for h in range(24)]
        seed = zlib.crc32(f"{key}:{day.isoformat()}".encode())
        needed = needed_on_day(expected, open_hours, handle_seconds=handle, goal=goal, seed=seed)
        for hour, moment in local_hours(day, zone):
            if not start <= moment < end:
                continue
            planned = round(planned_at(rules.plan, day, hour) * share, 2)
            hours.append(
                StaffingHour(
                    start=moment,
                    local_hour=f"{WEEKDAYS[day.weekday()]} {day.isoformat()} {hour:02d}:00",
                    forecast=round(expected[hour], 2),
                    handle_seconds=round(handle, 1),
                    needed=needed[hour],
                    planned=planned,
                    gap=round(needed[hour] - planned, 2),
                )
            )
        day += timedelta(days=1)
    return StaffingOut(
        queue=key,
        timezone=zone.key,
        weeks=weeks,
        method=method_for(goal, handle),
        answer_within_minutes=goal.window_seconds / 60,
        sla_share=goal.share,
        handle_seconds=round(handle, 1),
        planned_share=round(share, 4),
        hours=hours,
    )
