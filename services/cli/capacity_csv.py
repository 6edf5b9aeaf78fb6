"""The capacity CSV a supervisor edits, turned into the body of `PUT /v1/capacity`, and back
into a few lines a person reads. Pure functions: no HTTP, no database.

The format (a header row, then one row per stretch of opening hours):

    day,from,to,agents
    mon,08:00,12:00,3        weekly hours: Monday 08-12 with 3 agents on duty
    mon,12:00,16:00,2        ... and 12-16 with 2 (touching rows become one interval)
    2026-12-24,08:00,12:00,1 a date of its own: these hours replace that weekday's
    2026-12-25,closed,,      a holiday: no hours at all that day

`day` is `mon`..`sun` or an ISO date; `from`/`to` are local `HH:MM` (`to` may be `24:00`);
`agents` is how many agents are on duty, per whole local hour. Blank lines and lines starting
with `#` are ignored.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HEADER = ["day", "from", "to", "agents"]
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
# Limits of the plan model (services/callback/capacity.py), checked here to name the line.
MAX_INTERVALS_PER_DAY = 8
MAX_AGENTS = 10_000


class CsvError(ValueError):
    """A problem in the CSV, naming the line it is on."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class _Day:
    """What the rows say about one weekday or one date."""

    first_line: int
    closed_line: int | None = None
    intervals: list[tuple[int, int, int]] = field(default_factory=list)  # start, end, line
    agents: dict[int, tuple[int, int]] = field(default_factory=dict)  # hour -> agents, line


def _minutes(text: str, line: int, column: str) -> int:
    if not _CLOCK.match(text):
        raise CsvError(line, f"{column} {text!r} is not a time as HH:MM (00:00-24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _day_key(text: str, line: int) -> str:
    key = text.strip().lower()
    if key in WEEKDAYS:
        return key
    try:
        return date.fromisoformat(key).isoformat()
    except ValueError:
        raise CsvError(line, f"day {text!r} is neither mon..sun nor a date as YYYY-MM-DD") from None


def _rows(text: str) -> Iterable[tuple[int, list[str]]]:
    """Non-blank, non-comment rows with their line numbers, the header checked and skipped."""
    reader = csv.reader(io.StringIO(text))
    header_seen = False
    for row in reader:
        line = reader.line_num
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not header_seen:
            header_seen = True
            if [c.lower() for c in cells[:4]] != HEADER:
                raise CsvError(line, f"the first row must be the header {','.join(HEADER)}")
            continue
        while cells and not cells[-1]:
            cells.pop()
        yield line, cells
    if not header_seen:
        raise CsvError(1, f"the file is empty; it needs the header {','.join(HEADER)}")


def parse_capacity_csv(
    text: str, *, timezone: str, slot_minutes: int, per_agent: int
) -> dict[str, Any]:
    """The `PUT /v1/capacity` body the CSV describes; `CsvError` names the first bad line."""
    days: dict[str, _Day] = {}
    for line, cells in _rows(text):
        if len(cells) > 4:
            raise CsvError(line, f"expected at most 4 columns ({','.join(HEADER)})")
        key = _day_key(cells[0], line)
        day = days.setdefault(key, _Day(first_line=line))
        if len(cells) >= 2 and cells[1].lower() == "closed":
            if len(cells) > 2:
                raise CsvError(line, "a closed row has only the day: write `DAY,closed,,`")
            if day.intervals:
                raise CsvError(line, f"{key} is closed here but has hours on line {day.first_line}")
            day.closed_line = line
            continue
        if len(cells) < 4:
            raise CsvError(line, "give day, from, to and agents (or `DAY,closed,,`)")
        if day.closed_line is not None:
            raise CsvError(line, f"{key} has hours here but is closed on line {day.closed_line}")
        start, end = _minutes(cells[1], line, "from"), _minutes(cells[2], line, "to")
        if start >= end:
            raise CsvError(line, f"the hours end ({cells[2]}) before they start ({cells[1]})")
        if start % slot_minutes or end % slot_minutes:
            raise CsvError(
                line, f"{cells[1]}-{cells[2]} must start and end on a {slot_minutes}-minute slot"
            )
        try:
            agents = int(cells[3])
        except ValueError:
            raise CsvError(line, f"agents {cells[3]!r} is not a whole number") from None
        if not 0 <= agents <= MAX_AGENTS:
            raise CsvError(line, f"agents must be 0-{MAX_AGENTS}")
        for other_start, other_end, other_line in day.intervals:
            if start < other_end and other_start < end:
                raise CsvError(line, f"{key}: these hours overlap those on line {other_line}")
        day.intervals.append((start, end, line))
        for hour in range(start // 60, (end - 1) // 60 + 1):
            known = day.agents.get(hour)
            if known is not None and known[0] != agents:
                raise CsvError(
                    line,
                    f"{key} {hour:02d}:00-{hour + 1:02d}:00 has {known[0]} agents on line "
                    f"{known[1]}; staffing may change only on whole hours",
                )
            day.agents[hour] = (agents, line)

    body: dict[str, Any] = {
        "timezone": timezone,
        "slot_minutes": slot_minutes,
        "callbacks_per_agent_per_slot": per_agent,
        "business_hours": {},
        "agents": {},
        "default_agents": 0,
        "date_overrides": {},
        "closed_dates": [],
    }
    for key in sorted(days, key=_sort_key):
        day = days[key]
        if day.closed_line is not None:
            if key not in WEEKDAYS:
                body["closed_dates"].append(key)
            continue  # a closed weekday simply has no hours
        intervals = _merged(day)
        if len(intervals) > MAX_INTERVALS_PER_DAY:
            raise CsvError(
                day.intervals[-1][2],
                f"{key} has {len(intervals)} separate stretches of hours; "
                f"at most {MAX_INTERVALS_PER_DAY}",
            )
        hours = [{"start": _clock(s), "end": _clock(e)} for s, e in intervals]
        hourly = {str(hour): count for hour, (count, _) in sorted(day.agents.items())}
        if key in WEEKDAYS:
            body["business_hours"][key] = hours
            body["agents"][key] = hourly
        else:
            body["date_overrides"][key] = {"business_hours": hours, "agents": hourly}
    return body


def _sort_key(key: str) -> tuple[int, str]:
    return (WEEKDAYS.index(key), "") if key in WEEKDAYS else (len(WEEKDAYS), key)


def _merged(day: _Day) -> list[tuple[int, int]]:
    """The day's rows as intervals, rows that touch joined into one."""
    merged: list[tuple[int, int]] = []
    for start, end, _ in sorted(day.intervals):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _agents(count: int) -> str:
    return f"{count} agent{'' if count == 1 else 's'}"


def _stretches(intervals: list[dict[str, str]], agents: dict[str, int], default: int) -> str:
    """`08:00-12:00 3 agents, 12:00-16:00 2 agents`: each interval split where staffing changes."""
    parts: list[str] = []
    for interval in intervals:
        start = _minutes(interval["start"], 0, "start")
        end = _minutes(interval["end"], 0, "end")
        piece_start, count = start, agents.get(str(start // 60), default)
        for hour in range(start // 60 + 1, (end - 1) // 60 + 1):
            on_duty = agents.get(str(hour), default)
            if on_duty != count:
                parts.append(f"{_clock(piece_start)}-{_clock(hour * 60)} {_agents(count)}")
                piece_start, count = hour * 60, on_duty
        parts.append(f"{_clock(piece_start)}-{_clock(end)} {_agents(count)}")
    return ", ".join(parts) if parts else "closed"


def weekly_seats(plan: dict[str, Any]) -> int:
    """Callbacks a normal week's weekly hours allow (daylight-saving changes aside)."""
    step = int(plan["slot_minutes"])
    total = 0
    for weekday, intervals in plan.get("business_hours", {}).items():
        agents = plan.get("agents", {}).get(weekday, {})
        for interval in intervals:
            start = _minutes(interval["start"], 0, "start")
            end = _minutes(interval["end"], 0, "end")
            for moment in range(start, end - step + 1, step):
                on_duty = agents.get(str(moment // 60), plan.get("default_agents", 0))
                total += int(on_duty) * int(plan["callbacks_per_agent_per_slot"])
    return total


def summarize(plan: dict[str, Any]) -> list[str]:
    """A capacity plan (as the API returns it) in lines a supervisor reads."""
    per_agent = plan["callbacks_per_agent_per_slot"]
    lines = [
        f"capacity plan: {plan['timezone']}, {plan['slot_minutes']}-minute slots, "
        f"{per_agent} callback{'s' if per_agent != 1 else ''} per agent per slot",
    ]
    default = int(plan.get("default_agents", 0))
    for weekday in WEEKDAYS:
        intervals = plan.get("business_hours", {}).get(weekday, [])
        agents = {str(k): int(v) for k, v in plan.get("agents", {}).get(weekday, {}).items()}
        lines.append(f"  {weekday}         {_stretches(intervals, agents, default)}")
    for day, override in sorted(plan.get("date_overrides", {}).items()):
        hourly = {str(k): int(v) for k, v in (override.get("agents") or {}).items()}
        intervals = override.get("business_hours")
        text = "weekday's hours" if intervals is None else _stretches(intervals, hourly, default)
        lines.append(f"  {day}  {text}")
    for day in sorted(plan.get("closed_dates", [])):
        lines.append(f"  {day}  closed")
    lines.append(f"bookable callbacks in a normal week: {weekly_seats(plan)}")
    return lines
