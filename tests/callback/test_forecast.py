"""The forecast: the same weekday and hour over the last 8 weeks, recent weeks weighted more."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.callback.forecast import count_by_hour, forecast_day, weights

HELSINKI = ZoneInfo("Europe/Helsinki")
TUESDAY = date(2026, 12, 8)


def _events(per_week: list[int], hour: int) -> list[datetime]:
    """`per_week[k]` contacts spread over local `hour` on the Tuesday k+1 weeks back."""
    moments = []
    for ago, count in enumerate(per_week, start=1):
        day = TUESDAY - timedelta(weeks=ago)
        for i in range(count):
            local = datetime(day.year, day.month, day.day, hour, i % 60, tzinfo=HELSINKI)
            moments.append(local.astimezone(UTC))
    return moments


def test_eight_weeks_weighted_eight_down_to_one() -> None:
    # Last week 16 at 10-11, then 8 each week; 3 every week at 14-15.
    ten = [16, 8, 8, 8, 8, 8, 8, 8]
    counts = count_by_hour([*_events(ten, 10), *_events([3] * 8, 14)], HELSINKI)

    hours = forecast_day(counts, TUESDAY)

    assert weights() == (8, 7, 6, 5, 4, 3, 2, 1)
    # (8 x 16 + 28 x 8) / 36: last week's surge moves the forecast by 8/36 of itself.
    assert hours[10] == (8 * 16 + 28 * 8) / 36
    assert hours[14] == 3.0
    assert sum(hours) == hours[10] + hours[14]


def test_other_weekdays_do_not_count() -> None:
    counts = count_by_hour(_events([5] * 8, 9), HELSINKI)
    assert forecast_day(counts, TUESDAY + timedelta(days=1)) == [0.0] * 24


def test_a_young_queue_is_forecast_from_the_weeks_it_has() -> None:
    # Three weeks of history: 10, 20, 30 a week (newest first); older weeks are unknown,
    # not zero.
    counts = count_by_hour(_events([10, 20, 30], 11), HELSINKI)
    since = TUESDAY - timedelta(weeks=3)

    young = forecast_day(counts, TUESDAY, observed_since=since)
    as_if_zero = forecast_day(counts, TUESDAY)

    assert young[11] == (8 * 10 + 7 * 20 + 6 * 30) / 21
    assert as_if_zero[11] == (8 * 10 + 7 * 20 + 6 * 30) / 36


def test_hours_are_the_queue_s_wall_clock_hours_across_a_clock_change() -> None:
    # 2026-10-25 the clocks went back in Helsinki: 10:30 local was 08:30 UTC after it and
    # would be 07:30 UTC before it; both are the 10-11 hour.
    moments = [datetime(2026, 10, 25, 8, 30, tzinfo=UTC), datetime(2026, 10, 18, 7, 30, tzinfo=UTC)]
    counts = count_by_hour(moments, HELSINKI)
    assert counts == {(date(2026, 10, 25), 10): 1, (date(2026, 10, 18), 10): 1}
