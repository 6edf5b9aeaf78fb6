"""Agents working callbacks in rank order, simulated: when each callback would be started.

One function, `start_times`, is the rule: a free agent takes the highest-ranked callback that
is due, as `POST /v1/queue/claim` does, and works it for its handle time; an agent works only
in the hours the staffing allows them. Everything else here feeds it:

- the promises-at-risk job (§14) gives it the open callbacks in rank order, the observed
  handle time and the agents available now (capped by the plan), and compares each start
  with the callback's `promised_by`;
- the staffing forecast (§14) gives it simulated days of first-in-first-out arrivals
  (`simulated_days`) and asks how many started within the answer goal (`needed_for_day`);
- the phone-queue offer (§11) can ask it when a callback added now at the back would start.

Times are seconds from an origin the caller chooses (usually now); pure arithmetic, no clock.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from services.callback.erlang import staffing_floor

HOUR = 3600.0
# A callback no agent in the horizon starts.
NEVER = math.inf


@dataclass(frozen=True, slots=True)
class Staff:
    """Who works: one speed per agent (1.0 a full-time agent of this queue, 0.5 one who also
    serves another queue), and how many of them may start calls in each hour.

    `caps[k]` covers `[origin + k·HOUR, origin + (k+1)·HOUR)`; agent `i` starts calls only in
    hours where `caps[k] > i`, so the fastest agents work first. No `caps`: every agent, always.
    Past the last hour of `caps` nobody starts anything (the horizon ends).
    """

    speeds: Sequence[float]
    caps: Sequence[int] | None = None
    origin: float = 0.0

    def next_start(self, agent: int, moment: float) -> float:
        """The earliest time at or after `moment` at which `agent` may start a call."""
        if self.caps is None:
            return moment
        hour = max(0, math.floor((moment - self.origin) / HOUR))
        for k in range(hour, len(self.caps)):
            if self.caps[k] > agent:
                return max(moment, self.origin + k * HOUR)
        return NEVER


def start_times(ready: Sequence[float], handle: Sequence[float], staff: Staff) -> list[float]:
    """When each callback starts (`NEVER` if not in the horizon).

    `ready[i]` is when callback `i` may first be called (its due time) and `handle[i]` how long
    it keeps an agent; the callbacks are given in rank order (priority, then `rank_at`), and a
    free agent always takes the first-ranked one that is ready.
    """
    count = len(ready)
    starts = [NEVER] * count
    by_ready = sorted(range(count), key=ready.__getitem__)
    admitted = 0
    waiting: list[int] = []  # ranks of the callbacks that are ready, lowest first
    # Every agent is free from the origin (now); overdue callbacks are ready at once.
    free = [(0.0, a) for a, speed in enumerate(staff.speeds) if speed > 0]
    heapq.heapify(free)
    # Agents with nothing to do, lowest index (fastest) first. Waking one per callback that
    # falls due, rather than every idle agent each time, keeps a quiet queue with many agents
    # linear: 10,000 agents over 10,000 callbacks took minutes the other way.
    parked: list[int] = []
    clock = 0.0
    remaining = count
    while remaining:
        if parked and waiting:
            heapq.heappush(free, (clock, heapq.heappop(parked)))
        elif parked and admitted < count:
            due = ready[by_ready[admitted]]
            if not free or free[0][0] > due:
                heapq.heappush(free, (max(due, clock), heapq.heappop(parked)))
        if not free:
            break
        moment, agent = heapq.heappop(free)
        allowed = staff.next_start(agent, moment)
        if allowed == NEVER:
            continue
        if allowed > moment:
            heapq.heappush(free, (allowed, agent))
            continue
        clock = moment
        while admitted < count and ready[by_ready[admitted]] <= moment:
            heapq.heappush(waiting, by_ready[admitted])
            admitted += 1
        if not waiting:
            heapq.heappush(parked, agent)
            continue
        item = heapq.heappop(waiting)
        starts[item] = moment
        remaining -= 1
        heapq.heappush(free, (moment + handle[item] / staff.speeds[agent], agent))
    return starts


# ----------------------------------------------------------------------------- a forecast day


@dataclass(frozen=True, slots=True)
class Day:
    """One simulated (or hand-written) day: arrivals in time order and their handle times."""

    arrivals: Sequence[float]
    handles: Sequence[float]


def simulated_days(
    forecast: Sequence[float], *, handle_seconds: float, replications: int, seed: int
) -> list[Day]:
    """Days of Poisson arrivals at `forecast[h]` per hour, exponential handle times.

    These are Erlang C's own assumptions, so where Erlang C applies the two agree (a test
    holds them to it); the seed makes the same forecast give the same answer every time.
    """
    rng = random.Random(seed)
    days = []
    for _ in range(replications):
        arrivals: list[float] = []
        for hour, rate in enumerate(forecast):
            if rate <= 0:
                continue
            moment = hour * HOUR + rng.expovariate(rate / HOUR)
            while moment < (hour + 1) * HOUR:
                arrivals.append(moment)
                moment += rng.expovariate(rate / HOUR)
        handles = [rng.expovariate(1.0 / handle_seconds) for _ in arrivals]
        days.append(Day(arrivals=arrivals, handles=handles))
    return days


@dataclass(frozen=True, slots=True)
class HourShare:
    """Of the callbacks that arrived in one hour, how many started within the goal."""

    arrived: int
    within: int

    @property
    def share(self) -> float:
        return self.within / self.arrived if self.arrived else 1.0


def shares_by_hour(
    days: Sequence[Day], agents: Sequence[int], *, window_seconds: float
) -> list[HourShare]:
    """First come, first served with `agents[h]` agents in hour h: the share per arrival hour.

    The day runs on past its last hour with the last hour's agents, so the evening's
    callbacks are served rather than counted as never started.
    """
    hours = len(agents)
    caps = [*agents, *([agents[-1]] * 24 if agents else [])]
    staff = Staff(speeds=[1.0] * max(caps, default=0), caps=caps)
    arrived = [0] * hours
    within = [0] * hours
    for day in days:
        starts = start_times(day.arrivals, day.handles, staff)
        for arrival, start in zip(day.arrivals, starts, strict=True):
            hour = min(int(arrival // HOUR), hours - 1)
            arrived[hour] += 1
            within[hour] += start - arrival <= window_seconds
    return [HourShare(arrived=a, within=w) for a, w in zip(arrived, within, strict=True)]


def needed_for_day(
    days: Sequence[Day],
    forecast: Sequence[float],
    *,
    handle_seconds: float,
    window_seconds: float,
    share: float,
    open_hours: Sequence[bool] | None = None,
) -> list[int]:
    """The fewest agents per hour, from A / 0.85 up, that start `share` of each hour's
    callbacks within `window_seconds` in these days, first come first served.

    Start every open hour at the floor; while an hour's arrivals miss the goal, add an agent
    to that hour and run the day again. Adding an agent never delays anyone under first come
    first served, so this only climbs, and it stops: enough agents start everyone at once.
    """
    hours = len(forecast)
    is_open = list(open_hours) if open_hours is not None else [True] * hours
    agents = [
        max(staffing_floor(rate * handle_seconds / HOUR), 1 if rate > 0 else 0) if is_open[h] else 0
        for h, rate in enumerate(forecast)
    ]
    if not any(agents):
        return agents
    most = max(len(day.arrivals) for day in days) + 1 if days else 1
    while True:
        missing = [
            h
            for h, result in enumerate(shares_by_hour(days, agents, window_seconds=window_seconds))
            if is_open[h] and result.arrived and result.share < share and agents[h] < most
        ]
        if not missing:
            return agents
        for hour in missing:
            agents[hour] += 1
