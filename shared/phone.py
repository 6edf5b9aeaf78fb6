"""Phone numbers: the one rule that turns every notation people and PBXs use into E.164."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

# What telephony systems put in `From` when the caller hid their number.
_WITHHELD = {"", "anonymous", "restricted", "private", "unknown", "unavailable", "withheld"}

# What we call and text: a person's line. Premium-rate and shared-cost numbers bill the caller,
# international networks (+882, +883), pagers, UANs and personal numbers reach no one we can
# verify: the targets of SMS pumping and toll fraud (issue #14: +358600... got an SMS).
_CALLABLE_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }
)

# Shorter digit strings are local extensions or service numbers, never a country code and a
# subscriber number, so they are not read as international.
_MIN_BARE_INTERNATIONAL_DIGITS = 8


def is_withheld(raw: str | None) -> bool:
    """True when a caller id says the number was hidden rather than giving one."""
    if raw is None:
        return True
    value = raw.strip().lower().lstrip("+")
    return value in _WITHHELD or value.strip("0") == ""


def normalize(raw: str | None, region: str = "FI") -> str | None:
    """E.164 form of `raw`, or None when it is withheld or not a valid number.

    `040 123 4567`, `+358 40 1234567`, `0401234567`, `040/1234567` and `00358401234567`
    all give `+358401234567`. Bare digits that are no national number of `region` are tried
    as international, since PBXs often send `493023125741` for `+49 30 23125741`.
    Every service (intake's callers, callback's customers, history's searches) uses this
    rule, so a number stored by one is found by the others.
    """
    if raw is None or len(raw) > 64:
        return None
    return _normalized(raw, region)


# Parsing with the full metadata costs about 0.1 ms a number, and each number comes back many
# times (history reads it off every event of a callback: created, booked, each message), so
# answers are kept. In this process's memory only, a few thousand at most, and nothing but
# the mapping from a notation to its E.164 form (no customer, no record): what an erasure
# removes is in the databases.
@lru_cache(maxsize=4096)
def _normalized(raw: str, region: str) -> str | None:
    if is_withheld(raw):
        return None
    candidate = raw.strip()
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    phone = _e164(candidate, region)
    if (
        phone is None
        and candidate.isdigit()
        and not candidate.startswith("0")
        and len(candidate) >= _MIN_BARE_INTERNATIONAL_DIGITS
    ):
        phone = _e164("+" + candidate, region)
    return phone


def _e164(candidate: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(candidate, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed) or not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=4096)  # kept as `_normalized`'s answers are, for the same reason
def is_callable(e164: str) -> bool:
    """Whether we may call or text `e164`: a fixed line or a mobile, never a number that bills."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(parsed) in _CALLABLE_TYPES


@lru_cache(maxsize=4096)  # asked before every SMS written; kept as `_normalized`'s answers
def region_of(e164: str) -> str | None:
    """ISO region of an E.164 number (`FI`, `SE`, ...), or None if unknown."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return str(region) if region else None
