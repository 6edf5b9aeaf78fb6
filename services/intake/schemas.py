"""Intake's request and response bodies (beyond the shared contracts)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from services.intake.telephony.base import QUEUE_MAX_LENGTH
from shared.contracts import Accepted, Channel, Language

# A window the customer gives may be at most this long, and start at most this far ahead.
MAX_WINDOW = timedelta(days=14)
MAX_AHEAD = timedelta(days=90)


def _no_controls(value: str | None, *, allow_newlines: bool = False) -> str | None:
    if value is None:
        return None
    allowed = "\n\r\t" if allow_newlines else ""
    if any((ord(c) < 32 and c not in allowed) or 127 <= ord(c) < 160 for c in value):
        raise ValueError("must not contain control characters")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PreferredIn(_Strict):
    """Exactly one of: as soon as possible, a slot, or a window."""

    asap: Literal[True] | None = None
    slot_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    not_before: AwareDatetime | None = None
    not_after: AwareDatetime | None = None

    @field_validator("slot_id")
    @classmethod
    def _slot(cls, value: str | None) -> str | None:
        return _no_controls(value)

    @model_validator(mode="after")
    def _one_kind(self) -> PreferredIn:
        window = self.not_before is not None or self.not_after is not None
        kinds = sum((self.asap is True, self.slot_id is not None, window))
        if kinds != 1:
            raise ValueError("give exactly one of asap, slot_id, or not_before with not_after")
        if window:
            if self.not_before is None or self.not_after is None:
                raise ValueError("a window needs both not_before and not_after")
            if self.not_before >= self.not_after:
                raise ValueError("not_before must be earlier than not_after")
            if self.not_after - self.not_before > MAX_WINDOW:
                raise ValueError("the window may be at most 14 days long")
            now = datetime.now(self.not_before.tzinfo)
            if self.not_after <= now:
                raise ValueError("the window has already passed")
            if self.not_before > now + MAX_AHEAD:
                raise ValueError("the window may start at most 90 days ahead")
        return self


class ConsentIn(_Strict):
    sms: bool = True
    email: bool = True


class ContactRequestIn(_Strict):
    """A contact request from a web form, chat, email or social integration (DESIGN §3.2)."""

    channel: Channel
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    phone: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    language: Language | None = None
    message: Annotated[str, Field(max_length=2000)] | None = None
    preferred: PreferredIn = Field(default_factory=lambda: PreferredIn(asap=True))
    consent: ConsentIn = Field(default_factory=ConsentIn)
    # A queue key (DESIGN §9); intake does not know the queues, callback sends an unknown key
    # to `default`.
    queue: Annotated[str, Field(min_length=1, max_length=QUEUE_MAX_LENGTH)] | None = None

    @field_validator("name", "phone", "queue")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return _no_controls(value)

    @field_validator("message")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return _no_controls(value, allow_newlines=True)


class InboundItem(BaseModel):
    """An inbound record as listed: no body and no personal data."""

    id: str
    provider: str
    kind: str
    status: str
    reason: str | None
    received_at: datetime
    content_type: str | None
    body_bytes: int
    body_truncated: bool
    summary: dict[str, Any]


class InboundDetail(InboundItem):
    """One inbound record with what it carried (operators only)."""

    external_id: str | None
    phone: str | None
    email: str | None
    headers: dict[str, Any]
    query: str | None
    body: str | None = Field(description="The body as UTF-8 text, when it is valid UTF-8")
    body_base64: str | None = Field(description="The body in base64, when it is not UTF-8")
    erased_at: datetime | None


class ReplayResult(BaseModel):
    id: str
    status: Literal["replayed"]
    result: Accepted


class ErasureCounts(BaseModel):
    inbound: int
    call_legs: int
    outbox: int


class ErasureResult(BaseModel):
    id: str
    erased: ErasureCounts
    completed_at: datetime
