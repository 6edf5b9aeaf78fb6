"""History's own HTTP shapes; the event body itself is `shared.contracts.EventIn`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import EventIn

MAX_BATCH = 500


class RefOut(BaseModel):
    kind: str
    id: str | None = None


class EventOut(BaseModel):
    """One event as stored, with the customer it resolved to."""

    id: str
    occurred_at: datetime
    received_at: datetime
    channel: str
    direction: str
    type: str
    customer_id: str
    subject: RefOut | None = None
    actor: RefOut | None = None
    summary: str
    data: dict[str, Any]


class EventBatchIn(BaseModel):
    """`POST /v1/events:batch`: up to 500 events, validated as a whole."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]


class BatchItemOut(BaseModel):
    id: str
    status: Literal["created", "duplicate"]
    event: EventOut


class BatchOut(BaseModel):
    """Per-item results, in the order the events were sent."""

    items: list[BatchItemOut]


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = None


class CustomerOut(BaseModel):
    """Who the customer is: every phone number and email we know them by."""

    id: str
    name: str | None
    external_id: str | None
    language: str | None
    phones: list[str]
    emails: list[str]
    created_at: datetime
    updated_at: datetime


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    next_cursor: str | None = None


class OpenCallbackOut(BaseModel):
    """A callback still open, as its latest lifecycle event on the timeline tells it."""

    id: str
    status: str
    due_at: datetime | None = None
    agent_id: str | None = None
    last_event_type: str
    last_event_at: datetime


class CustomerProfileOut(CustomerOut):
    """The profile plus where the customer's case stands."""

    open_callbacks: list[OpenCallbackOut]
    # Latest inbound or outbound contact per channel; internal bookkeeping is not a contact.
    last_contact: dict[str, datetime]
    counts: dict[str, int]
