"""Slots of a range, and the one slot a booking names, as a walk from each interval's start
finds them: `iter_slots` jumps to a range's start instead of walking three days of slots
(every booking looks one up), and DST days, unaligned ranges and unstaffed hours must not
move a slot or its capacity."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.callback.capacity import CapacityPlan, Slot, _instant, find_slot, iter_slots

PLAN = CapacityPlan.model_validate(
    {
        "timezone": "Europe/Helsinki",
        "slot_minutes": 20,
        "business_hours": {
            day: [{"start": "02:00", "end": "05:00"}, {"start": "08:00", "end": "17:40"}]
            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        },
        # Nobody at 12-13 local: those slots have no capacity and are not slots at all.
        "agents": {
            day: {str(hour): (0 if hour == 12 else 1 + hour % 3) for hour in range(24)}
            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        },
        "callbacks_per_agent_per_slot": 2,
    }
)


def _walked(plan: CapacityPlan, first: date, last: date) -> list[Slot]:
    """Every slot of these local days, stepping from each interval's start."""
    slots = []
    day = first
    while day <= last:
        for interval in plan.intervals_on(day):
            moment = _instant(day, interval.start, plan.zone)
            stop = _instant(day, interval.end, plan.zone)
            while moment + plan.slot_length <= stop:
                local = moment.astimezone(plan.zone)
                capacity = plan.agents_at(day, local.hour) * plan.callbacks_per_agent_per_slot
                if capacity > 0:
                    slots.append(Slot(moment, moment + plan.slot_length, capacity, plan.zone))
                moment += plan.slot_length
        day += timedelta(days=1)
    return slots


# The spring change (03:00 -> 04:00 on 2026-03-29) and the autumn one (04:00 -> 03:00 on
# 2026-10-25) in Helsinki, and an ordinary week.
@pytest.mark.parametrize("around", [date(2026, 3, 29), date(2026, 10, 25), date(2026, 12, 7)])
def test_a_range_and_a_single_slot_are_the_walks(around: date) -> None:
    walked = _walked(PLAN, around - timedelta(days=3), around + timedelta(days=3))
    assert len(walked) > 100
    for slot in walked:
        assert find_slot(PLAN, slot.start) == slot
        # A moment inside a slot starts none.
        assert find_slot(PLAN, slot.start + timedelta(minutes=7)) is None
    starts = datetime.combine(around - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    for offset_minutes in range(0, 3 * 24 * 60, 97):  # unaligned starts, over three days
        start = starts + timedelta(minutes=offset_minutes)
        for length in (timedelta(minutes=1), timedelta(minutes=45), timedelta(hours=30)):
            expected = [s for s in walked if start <= s.start < start + length]
            assert list(iter_slots(PLAN, start, start + length)) == expected, (start, length)
