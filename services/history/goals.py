"""A queue's service goals (DESIGN §13) and the figures measured against them.

Callback owns the goals (`goals` in `GET /v1/queues/{key}`); `queues.QueueZones` asks for
them with the zone. The arithmetic here is pure: `stats` fetches the rows and hands them in.

Definitions (docs/history.md repeats them), over the callbacks whose first closing event
(completed, failed, expired or cancelled) falls in the range:

- answer-within share: of the callbacks closed as completed, failed or expired, the share
  reached within `goals.answer_within_minutes` of first contact. A queue without that goal
  has the minutes of its SLA: each callback's own SLA deadline, so the figure is the SLA
  share. Its goal is `goals.sla_share`, the share staffing plans for.
- reach rate: reached (`reached` or `reached_inbound`) over completed + failed + expired.
- CSAT: the mean score of the survey answers in the range (the latest answer of a survey
  counts); the response rate is the share of the surveys sent in the range answered since.
- time to reach: as `stats` defines it, over the reaches above.
- attempts per reach: final attempts (`callback_attempted`) in the range over the reaches.
- same-agent share: of the reaches, those by the agent the customer last spoke with.
- abandonment: of every closed callback (cancelled ones too), those expired or cancelled by
  the customer.

Only goals a queue sets get a verdict: `met` at or above the goal, else `missed`. Across all
queues there is no goal (each queue has its own), so the figures stand without verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.history.schemas import (
    Abandonment,
    AnswerWithin,
    AttemptsPerReach,
    Csat,
    GoalsSet,
    Performance,
    ReachRate,
    SameAgentShare,
    TimeToReach,
)
from shared.vocabulary import ClosingOutcome, EventType, GoalVerdict

# Measured shares are ratios of counts: 4/5 must meet a goal of 0.8 although it is 0.7999...
_TOLERANCE = 1e-9

NO_GOALS = GoalsSet()


def goals_in(raw: Mapping[str, Any] | None) -> GoalsSet:
    """The goals of callback's queue answer (callback checks their ranges when they are set);
    a key that is not a number counts as unset."""
    if not raw:
        return NO_GOALS

    def number(name: str) -> float | None:
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None

    minutes = number("answer_within_minutes")
    return GoalsSet(
        answer_within_minutes=int(minutes) if minutes is not None else None,
        sla_share=number("sla_share"),
        csat_average=number("csat_average"),
        reach_rate=number("reach_rate"),
    )


def verdict(value: float | None, goal: float | None) -> GoalVerdict | None:
    """`met` at or above the goal, `missed` below it; none without a goal or a figure."""
    if value is None or goal is None:
        return None
    return GoalVerdict.MET if value >= goal - _TOLERANCE else GoalVerdict.MISSED


@dataclass(frozen=True, slots=True)
class Closed:
    """One callback's first closing event in the range, with what stats made of it."""

    type: str
    occurred_at: datetime
    outcome: str | None
    agent_id: str | None
    reached: bool
    # First contact to reached, for a reach.
    seconds_to_reach: float | None
    # The SLA deadline, when the callback's events tell it.
    deadline: datetime | None
    same_agent: bool


@dataclass(slots=True)
class Tally:
    """What one group of figures (the whole range, an agent, a day) is measured from."""

    closed: list[Closed]
    attempts: int = 0
    responses: int = 0
    score_sum: int = 0
    surveys_sent: int = 0
    surveys_answered: int = 0


def new_tally() -> Tally:
    return Tally(closed=[])


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile of `values` with linear interpolation between ranks."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def without_cancelled(closed: Iterable[Closed]) -> list[Closed]:
    """The callbacks completed, failed or expired: cancelled ones count for abandonment only,
    as v1 counts the reach rate."""
    return [c for c in closed if c.type != EventType.CALLBACK_CANCELLED]


def measure(tally: Tally, goals: GoalsSet) -> Performance:
    """The figures of §13 for one group, each beside its goal where the queue sets one."""
    ended = without_cancelled(tally.closed)
    reaches = [c for c in ended if c.reached]
    durations = [c.seconds_to_reach for c in reaches if c.seconds_to_reach is not None]
    within_rows = answered_within(ended, goals.answer_within_minutes)
    within_share = _share(*within_rows)
    reach_rate = _share(len(reaches), len(ended))
    average = tally.score_sum / tally.responses if tally.responses else None
    expired = sum(c.type == EventType.CALLBACK_EXPIRED for c in tally.closed)
    by_customer = sum(
        c.type == EventType.CALLBACK_CANCELLED and c.outcome == ClosingOutcome.CANCELLED_BY_CUSTOMER
        for c in tally.closed
    )
    same_agent = sum(c.same_agent for c in reaches)
    return Performance(
        answer_within=AnswerWithin(
            minutes=goals.answer_within_minutes,
            closed=within_rows[1],
            reached_within=within_rows[0],
            share=within_share,
            goal=goals.sla_share,
            verdict=verdict(within_share, goals.sla_share),
        ),
        reach_rate=ReachRate(
            closed=len(ended),
            reached=len(reaches),
            rate=reach_rate,
            goal=goals.reach_rate,
            verdict=verdict(reach_rate, goals.reach_rate),
        ),
        csat=Csat(
            average=average,
            responses=tally.responses,
            surveys_sent=tally.surveys_sent,
            surveys_answered=tally.surveys_answered,
            response_rate=_share(tally.surveys_answered, tally.surveys_sent),
            goal=goals.csat_average,
            verdict=verdict(average, goals.csat_average),
        ),
        time_to_reach=TimeToReach(
            count=len(durations),
            median_seconds=percentile(durations, 0.5),
            p90_seconds=percentile(durations, 0.9),
        ),
        attempts_per_reach=AttemptsPerReach(
            attempts=tally.attempts,
            reaches=len(reaches),
            value=tally.attempts / len(reaches) if reaches else None,
        ),
        same_agent=SameAgentShare(
            reaches=len(reaches), same_agent=same_agent, share=_share(same_agent, len(reaches))
        ),
        abandonment=Abandonment(
            closed=len(tally.closed),
            expired=expired,
            cancelled_by_customer=by_customer,
            share=_share(expired + by_customer, len(tally.closed)),
        ),
    )


def answered_within(ended: Iterable[Closed], minutes: int | None) -> tuple[int, int]:
    """(reached within, counted): by the goal's minutes, else by each SLA deadline."""
    within = counted = 0
    for closed in ended:
        if minutes is not None:
            counted += 1
            seconds = closed.seconds_to_reach
            within += closed.reached and seconds is not None and seconds <= minutes * 60
        elif closed.deadline is not None:
            counted += 1
            within += closed.reached and closed.occurred_at <= closed.deadline
    return within, counted
