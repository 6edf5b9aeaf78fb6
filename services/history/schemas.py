"""History's own HTTP shapes; the event body itself is `shared.contracts.EventIn`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.history.queues import DEFAULT_QUEUE
from shared.contracts import EventIn
from shared.pagination import Page
from shared.vocabulary import CallbackStatus, ClosingOutcome

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


class EventPage(Page[EventOut]):
    """A page of a customer's timeline, newest first."""


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


class CustomerPage(Page[CustomerOut]):
    """The customers a lookup found (one page: a number or an email names few)."""


class OpenCallbackOut(BaseModel):
    """A callback still open, as its latest lifecycle event on the timeline tells it."""

    id: str
    status: CallbackStatus
    # The queue it belongs to (DESIGN §9); events from before queues existed: `default`.
    queue: str = DEFAULT_QUEUE
    due_at: datetime | None = None
    agent_id: str | None = None
    last_event_type: str
    last_event_at: datetime
    sla_deadline: datetime | None = None
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    attempts: int | None = None
    contact_count: int | None = None
    flag: str | None = None


class ClosedCallbackOut(BaseModel):
    """A callback that is over: how it ended (`outcome`: reached, reached_inbound, ...)."""

    id: str
    status: CallbackStatus
    queue: str = DEFAULT_QUEUE
    outcome: ClosingOutcome | None = None
    agent_id: str | None = None
    attempts: int | None = None
    closed_at: datetime
    last_event_type: str


class CustomerProfileOut(CustomerOut):
    """The profile plus where the customer's case stands."""

    open_callbacks: list[OpenCallbackOut]
    # The latest callbacks that are over, newest first (at most five).
    recent_callbacks: list[ClosedCallbackOut]
    # Latest inbound or outbound contact per channel; internal bookkeeping is not a contact.
    last_contact: dict[str, datetime]
    counts: dict[str, int]
    # Customer records merged into this one; each still answers with this profile.
    merged_ids: list[str]
    # When the person's data was erased; the record and its timeline stay, without PII.
    erased_at: datetime | None = None


class MergeOut(BaseModel):
    """One merge recorded on the survivor's timeline."""

    event_id: str
    merged_at: datetime
    survivor_id: str
    merged_customer_id: str
    cause_event_id: str | None = None


class MergePage(Page[MergeOut]):
    """A page of the merges recorded on a customer's timeline, newest first."""


class ErasureOut(BaseModel):
    """The audit line of an erasure: ids, time and counts, no personal data."""

    id: str
    customer_id: str
    erased_at: datetime
    customers: int
    identities: int
    events: int
    # Services asked (through history's outbox) to erase the same phones and emails.
    forwarded_to: list[str]


class CallbackCounts(BaseModel):
    created: int = 0
    completed: int = 0
    failed: int = 0
    expired: int = 0


class StatsBucket(BaseModel):
    """One hour or day: `start`/`end` are UTC instants of the local boundaries in the
    answer's `timezone` (the queue's for one queue, else the site's)."""

    start: datetime
    end: datetime
    local_start: str
    contacts: dict[str, int]
    missed_calls: int
    callbacks: CallbackCounts


class TimeToReach(BaseModel):
    """First contact to reached, over the callbacks reached in the range."""

    count: int
    median_seconds: float | None
    p90_seconds: float | None


class SlaShare(BaseModel):
    """Callbacks closed in the range with a known SLA deadline, and those reached by it."""

    closed: int
    reached_within: int
    share: float | None


class StatsOut(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    bucket: Literal["hour", "day"]
    timezone: str
    contacts: dict[str, int]
    missed_calls: int
    callbacks: CallbackCounts
    buckets: list[StatsBucket]
    time_to_reach: TimeToReach
    sla: SlaShare
    # demand[weekday - 1][hour]: inbound contacts by local ISO weekday (Monday first) and
    # hour of the day, in `timezone`.
    demand: list[list[int]]
    # The filters the figures are for (DESIGN §9); null: all queues, all agents.
    queue: str | None = None
    agent_id: str | None = None
    # Reaches counted in `time_to_reach` by the agent the customer last spoke with.
    same_agent_reaches: int = 0
