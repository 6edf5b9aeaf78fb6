"""Demand by weekday and hour: the weighted average of the same hour over the last weeks.

The forecast for, say, Tuesday 10-11 is a weighted average of the Tuesdays 10-11 of the last
8 weeks, the most recent counting most. The weights fall in a straight line: last week 8,
the week before 7, ... eight weeks ago 1 (they sum to 36, so last week is 22 % of the answer
and eight weeks ago 3 %). A straight line rather than an exponential one keeps the old weeks
meaningful, so one odd week (a holiday, an outage) moves the forecast by at most 22 %.

Weeks before the queue's first observed demand are left out rather than read as zero, so a
queue that is three weeks old is forecast from its three weeks. Hours are local wall-clock
hours of the queue's zone; on the autumn day the repeated hour is one hour of the forecast.
Pure arithmetic: `staffing.py` reads the moments from the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

WEEKS = 8

# A local hour: the date and the hour (0-23) on the queue's wall clock.
HourKey = tuple[date, int]


def weights(weeks: int = WEEKS) -> tuple[int, ...]:
    """The weight of 1, 2, ... `weeks` weeks ago: `weeks` down to 1."""
    if not 1 <= weeks <= 52:
        raise ValueError("forecast from 1 to 52 weeks")
    return tuple(range(weeks, 0, -1))


def count_by_hour(moments: Iterable[datetime], zone: ZoneInfo) -> Counter[HourKey]:
    """How many moments fall in each local hour of `zone`."""
    counts: Counter[HourKey] = Counter()
    for moment in moments:
        local = moment.astimezone(zone)
        counts[(local.date(), local.hour)] += 1
    return counts


def forecast_day(
    counts: Mapping[HourKey, int],
    day: date,
    *,
    weeks: int = WEEKS,
    observed_since: date | None = None,
) -> list[float]:
    """Expected demand in each local hour (0-23) of `day` from the same weekday's hours in
    the `weeks` weeks before it; weeks before `observed_since` do not count."""
    used = [
        (weight, day - timedelta(weeks=ago))
        for ago, weight in enumerate(weights(weeks), start=1)
        if observed_since is None or day - timedelta(weeks=ago) >= observed_since
    ]
    total = sum(weight for weight, _ in used)
    if not total:
        return [0.0] * 24
    return [
        sum(weight * counts.get((past, hour), 0) for weight, past in used) / total
        for hour in range(24)
    ]
