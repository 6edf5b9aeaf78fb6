"""What a client sent, made ready to store: E.164 numbers, aware times, and the 422 for a field."""

from __future__ import annotations

from datetime import UTC, datetime

from services.callback.settings import CallbackSettings
from shared.agent_ids import AGENT_ID_RULE, is_agent_id
from shared.errors import Unprocessable
from shared.phone import normalize


def invalid(loc: list[str | int], msg: str) -> Unprocessable:
    """The 422 for one field, shaped like FastAPI's own validation errors."""
    return Unprocessable(
        "The request did not pass validation.", extra={"errors": [{"loc": loc, "msg": msg}]}
    )


def aware(moment: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC, as the contract's times are.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def phone(raw: str, settings: CallbackSettings, loc: list[str | int]) -> str:
    """`raw` as E.164, or a 422 at `loc`."""
    e164 = normalize(raw, settings.default_region)
    if e164 is None:
        raise invalid(loc, "not a valid phone number")
    return e164


def agent_id(raw: str | None, loc: list[str | int]) -> str | None:
    """`raw` if it is an agent id (None stays None), or a 422 at `loc`."""
    if raw is not None and not is_agent_id(raw):
        raise invalid(loc, f"not an agent id ({AGENT_ID_RULE})")
    return raw
