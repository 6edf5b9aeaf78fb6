"""Phone numbers: every notation a person types, normalised to E.164."""

from __future__ import annotations

import phonenumbers

# What telephony systems put in `From` when the caller hid their number.
_WITHHELD = {"", "anonymous", "restricted", "private", "unknown", "unavailable", "withheld"}


def is_withheld(raw: str | None) -> bool:
    """True when a caller id says the number was hidden rather than giving one."""
    if raw is None:
        return True
    value = raw.strip().lower().lstrip("+")
    return value in _WITHHELD or value.strip("0") == ""


def normalize(raw: str | None, region: str = "FI") -> str | None:
    """E.164 form of `raw`, or None when it is withheld or not a possible number.

    `040 123 4567`, `+358 40 1234567`, `0401234567`, `040/1234567` and `00358401234567`
    all give `+358401234567`.
    """
    if raw is None or is_withheld(raw) or len(raw) > 64:
        return None
    candidate = raw.strip()
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        parsed = phonenumbers.parse(candidate, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed) or not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def region_of(e164: str) -> str | None:
    """ISO region of an E.164 number (`FI`, `SE`, ...), or None if unknown."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return str(region) if region else None
