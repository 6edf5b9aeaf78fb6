"""Times in query strings as people type them: one rule for every `from`/`to`, and local days.

`?from=2026-12-05T00:00:00+02:00` typed into a browser or curl arrives as
`2026-12-05T00:00:00 02:00`: an unencoded `+` is form encoding's space. A space right before
an offset at the end of a time can mean nothing else, so it is read as the `+` it was.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

INSTANT_HELP = (
    "a date and time with its UTC offset, e.g. 2026-12-05T00:00:00Z or 2026-12-05T00:00:00+02:00"
)
# Longer than any ISO 8601 time with fractions and an offset: not worth a regex's time.
_MAX_LENGTH = 64
# The time (hours and minutes at least, so `2026-12-05 02:00` stays a naive time and is
# refused), one space, then an offset `hh`, `hhmm` or `hh:mm`.
_SPACED_OFFSET = re.compile(
    r"(?P<moment>.+\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (?P<offset>\d{2}(?::?\d{2})?)"
)


def restore_plus(value: str) -> str:
    """`value` with a space before its trailing offset read as `+`; anything else unchanged."""
    if len(value) > _MAX_LENGTH:
        return value
    spaced = _SPACED_OFFSET.fullmatch(value)
    return f"{spaced['moment']}+{spaced['offset']}" if spaced else value


def _instant(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    if isinstance(value, str):
        value = restore_plus(value)
    try:
        moment: datetime = handler(value)
        # In UTC from here on: an offset that puts year 9999 past the calendar's end is the
        # caller's mistake (a 422 here), not an OverflowError deep in the arithmetic.
        return moment.astimezone(UTC)
    except (ValidationError, OverflowError):
        # pydantic's own texts ("unexpected extra characters") don't say what to send.
        raise PydanticCustomError("instant", "Expected " + INSTANT_HELP + ".") from None


# An aware instant in UTC; naive times, garbage and out-of-range times are a 422 that shows
# the form to send. Used as `Annotated[Instant | None, Query(alias="from")] = None`.
Instant = Annotated[AwareDatetime, WrapValidator(_instant)]


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which local `day` begins in `zone` (its first moment on a DST day)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def local_day_start(moment: datetime, zone: ZoneInfo, *, days_after: int = 0) -> datetime:
    """The start of the local day `days_after` days after `moment`'s local day in `zone`."""
    return day_start(moment.astimezone(zone).date() + timedelta(days=days_after), zone)
