"""Our own signed JSON format (`POST /v1/webhooks/generic`, DESIGN §3.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from services.intake.providers.base import CallReport, PayloadRejected
from shared.errors import validation_errors
from shared.jsonutil import loads

MISSED_STATUSES = frozenset({"missed", "no_answer", "busy", "abandoned"})


class KnownCaller(BaseModel):
    """`metadata.customer`: what the telephony system already knows about the caller."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    language: Literal["fi", "sv", "en"] | None = None


class GenericCallEvent(BaseModel):
    """The body a telephony integration posts to the generic webhook."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    id: Annotated[str, Field(min_length=1, max_length=128)]
    call_id: Annotated[str, Field(min_length=1, max_length=128)]
    from_: Annotated[str | None, Field(alias="from", max_length=64)] = None
    to: Annotated[str | None, Field(max_length=64)] = None
    status: Literal["missed", "no_answer", "busy", "abandoned", "answered"]
    occurred_at: datetime
    queue: Annotated[str | None, Field(max_length=200)] = None
    metadata: dict[str, Any] | None = None


def parse(body: bytes) -> CallReport:
    """The call report in a verified body, or `PayloadRejected` saying what is wrong."""
    try:
        document = loads(body)
    except ValueError:
        raise PayloadRejected("the body is not valid JSON", status=400) from None
    try:
        event = GenericCallEvent.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in validation_errors(exc.errors())
        )
        raise PayloadRejected(
            f"the body does not match the generic call format: {problems}"
        ) from None
    if event.occurred_at.tzinfo is None:
        raise PayloadRejected("occurred_at: must carry a time zone (RFC 3339)")
    try:
        known = KnownCaller.model_validate((event.metadata or {}).get("customer") or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"metadata.customer.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in validation_errors(exc.errors())
        )
        raise PayloadRejected(problems) from None
    return CallReport(
        provider="generic",
        call_id=event.call_id,
        outcome="missed" if event.status in MISSED_STATUSES else "answered",
        caller=event.from_,
        callee=event.to,
        occurred_at=event.occurred_at,
        status=event.status,
        queue=event.queue,
        email=known.email.lower() if known.email else None,
        name=known.name,
        language=known.language,
        details={"event_id": event.id},
    )
