"""The capacity plan and slot arithmetic: pure functions, no database.

Slots are laid out in the plan's time zone: each business interval of a local date runs from
its local start instant to its local end instant in steps of real elapsed time. On a day when
the clocks change, an interval that spans the change simply holds one hour fewer (spring) or
more (autumn) of slots: no slot is lost, none is doubled, and consecutive slots always meet.
A slot's id is its start instant in UTC (`2026-11-24T12:30:00Z`), stable across plan edits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")

Agents = Annotated[int, Field(ge=0, le=10_000)]
HourlyAgents = Annotated[dict[Annotated[int, Field(ge=0, le=23)], Agents], Field(max_length=24)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Strict):
    """Business hours on one day, local wall-clock `HH:MM` (end may be `24:00`)."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError("write times as HH:MM (00:00-24:00)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError("an interval ends after it starts")
        return self


Intervals = Annotated[list[Interval], Field(max_length=8)]


class DayOverride(_Strict):
    """A date whose hours or staffing differ from its weekday's (either may be left out)."""

    business_hours: Intervals | None = None
    agents: HourlyAgents | None = None


class CapacityPlan(_Strict):
    """What staffing allows: `PUT /v1/capacity`."""

    timezone: Annotated[str, Field(max_length=64)] = "Europe/Helsinki"
    slot_minutes: Literal[5, 10, 15, 20, 30, 60] = 15
    callbacks_per_agent_per_slot: Annotated[int, Field(ge=1, le=100)] = 1
    business_hours: Annotated[dict[Weekday, Intervals], Field(max_length=7)] = Field(
        default_factory=dict
    )
    # Agents on duty per weekday and local hour; an hour not listed has `default_agents`.
    agents: Annotated[dict[Weekday, HourlyAgents], Field(max_length=7)] = Field(
        default_factory=dict
    )
    default_agents: Agents = 0
    date_overrides: Annotated[dict[date, DayOverride], Field(max_length=400)] = Field(
        default_factory=dict
    )
    closed_dates: Annotated[list[date], Field(max_length=400)] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone (e.g. Europe/Helsinki)") from None
        return value

    @model_validator(mode="after")
    def _intervals_fit_slots(self) -> CapacityPlan:
        days = [*self.business_hours.values()]
        days += [o.business_hours for o in self.date_overrides.values() if o.business_hours]
        for intervals in days:
            previous_end = -1
            for interval in sorted(intervals, key=lambda i: _minutes(i.start)):
                start, end = _minutes(interval.start), _minutes(interval.end)
                if start % self.slot_minutes or end % self.slot_minutes:
                    raise ValueError(
                        f"business hours must start and end on a slot boundary "
                        f"(every {self.slot_minutes} min)"
                    )
                if start < previous_end:
                    raise ValueError("business hours of one day must not overlap")
                previous_end = end
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def slot_length(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    def intervals_on(self, day: date) -> list[Interval]:
        if day in self.closed_dates:
            return []
        override = self.date_overrides.get(day)
        if override is not None and override.business_hours is not None:
            return sorted(override.business_hours, key=_start_key)
        return sorted(self.business_hours.get(WEEKDAYS[day.weekday()], []), key=_start_key)

    def agents_at(self, day: date, hour: int) -> int:
        override = self.date_overrides.get(day)
        if override is not None and override.agents is not None:
            return override.agents.get(hour, self.default_agents)
        return self.agents.get(WEEKDAYS[day.weekday()], {}).get(hour, self.default_agents)


def _start_key(interval: Interval) -> int:
    return _minutes(interval.start)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _instant(day: date, clock: str, zone: ZoneInfo) -> datetime:
    """The UTC instant of local wall-clock `clock` on `day` (`24:00` is the next midnight).

    A wall time the spring change skips is read with the offset before the change (03:30
    becomes 04:30 summer time); an autumn time that occurs twice is its first occurrence.
    """
    minutes = _minutes(clock)
    if minutes == 24 * 60:
        local = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    else:
        local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Slot:
    """One bookable slot: its UTC bounds and how many callbacks staffing allows in it."""

    start: datetime
    end: datetime
    capacity: int
    zone: ZoneInfo

    @property
    def id(self) -> str:
        return slot_id(self.start)

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(self.zone)

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(self.zone)


def slot_id(start: datetime) -> str:
    return start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_slot_id(value: str) -> datetime | None:
    """The start instant a slot id names, or None if it is not one."""
    if len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def iter_slots(plan: CapacityPlan, start: datetime, end: datetime) -> Iterator[Slot]:
    """Slots with capacity that start in `[start, end)`, in time order."""
    zone, step = plan.zone, plan.slot_length
    day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date()
    while day <= last_day:
        for interval in plan.intervals_on(day):
            moment = _instant(day, interval.start, zone)
            stop = _instant(day, interval.end, zone)
            if moment < start:
                # Straight to the last step at or before `start`: the same steps from the
                # interval's start, without walking them (a booking looks up one slot).
                moment += step * ((start - moment) // step)
            while moment + step <= stop and moment < end:
                if start <= moment:
                    local = moment.astimezone(zone)
                    capacity = plan.agents_at(day, local.hour) * plan.callbacks_per_agent_per_slot
                    if capacity > 0:
                        yield Slot(start=moment, end=moment + step, capacity=capacity, zone=zone)
                moment += step
        day += timedelta(days=1)


def find_slot(plan: CapacityPlan, start: datetime) -> Slot | None:
    """The slot that starts at `start`, if the plan has one with capacity."""
    for slot in iter_slots(plan, start, start + timedelta(seconds=1)):
        if slot.start == start:
            return slot
    return None


def next_business_moment(
    plan: CapacityPlan, moment: datetime, *, horizon_days: int = 14
) -> datetime:
    """`moment` if it falls within business hours, else the start of the next business interval.

    Without any business hours in the horizon, `moment` itself: better a late call than none.
    """
    zone = plan.zone
    day = moment.astimezone(zone).date() - timedelta(days=1)
    for _ in range(horizon_days + 2):
        for interval in plan.intervals_on(day):
            opens, closes = _instant(day, interval.start, zone), _instant(day, interval.end, zone)
            if closes > moment:
                return max(moment, opens)
        day += timedelta(days=1)
    return moment
