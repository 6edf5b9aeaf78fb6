"""History's own HTTP shapes; the event body itself is `shared.contracts.EventIn`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.history.queues import DEFAULT_QUEUE
from shared.contracts import EventIn
from shared.pagination import Page
from shared.vocabulary import CallbackStatus, ClosingOutcome, GoalVerdict

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


class GoalsSet(BaseModel):
    """A queue's goals (§13) as callback keeps them; null: the queue sets none."""

    answer_within_minutes: int | None = None
    sla_share: float | None = None
    csat_average: float | None = None
    reach_rate: float | None = None


class AnswerWithin(BaseModel):
    """Callbacks closed and those reached within `minutes` of first contact (null minutes:
    within each callback's SLA deadline, the SLA share); the goal is `goals.sla_share`."""

    minutes: int | None
    closed: int
    reached_within: int
    share: float | None
    goal: float | None
    verdict: GoalVerdict | None


class ReachRate(BaseModel):
    """Reached over completed + failed + expired; cancelled callbacks are not counted."""

    closed: int
    reached: int
    rate: float | None
    goal: float | None
    verdict: GoalVerdict | None


class Csat(BaseModel):
    """Survey scores (1-5) in the range, and how many of the surveys sent were answered."""

    average: float | None
    responses: int
    surveys_sent: int
    surveys_answered: int
    response_rate: float | None
    goal: float | None
    verdict: GoalVerdict | None


class AttemptsPerReach(BaseModel):
    attempts: int
    reaches: int
    value: float | None


class SameAgentShare(BaseModel):
    """Reaches by the agent the customer last spoke with."""

    reaches: int
    same_agent: int
    share: float | None


class Abandonment(BaseModel):
    """Callbacks closed (cancelled ones too), and those expired or cancelled by the customer."""

    closed: int
    expired: int
    cancelled_by_customer: int
    share: float | None


class Performance(BaseModel):
    """The figures of §13, each beside its goal and verdict where the queue sets a goal."""

    answer_within: AnswerWithin
    reach_rate: ReachRate
    csat: Csat
    time_to_reach: TimeToReach
    attempts_per_reach: AttemptsPerReach
    same_agent: SameAgentShare
    abandonment: Abandonment


class AgentPerformance(Performance):
    agent_id: str


class DayPerformance(Performance):
    """One local day of the answer's `timezone`: `start`/`end` are its UTC bounds."""

    start: datetime
    end: datetime
    local_date: str


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
    # sla_by_bucket[i]: the SLA share of the callbacks closed in buckets[i] (the line of the
    # console's Today chart).
    sla_by_bucket: list[SlaShare] = Field(default_factory=list)
    # demand[weekday - 1][hour]: inbound contacts by local ISO weekday (Monday first) and
    # hour of the day, in `timezone`.
    demand: list[list[int]]
    # The filters the figures are for (DESIGN §9); null: all queues, all agents.
    queue: str | None = None
    agent_id: str | None = None
    # Reaches counted in `time_to_reach` by the agent the customer last spoke with.
    same_agent_reaches: int = 0
    # The queue's goals (none across all queues), and the figures measured against them:
    # for the whole range, per agent who closed, tried or was rated, and per local day.
    goals: GoalsSet = Field(default_factory=GoalsSet)
    performance: Performance
    performance_by_agent: list[AgentPerformance] = Field(default_factory=list)
    performance_by_day: list[DayPerformance] = Field(default_factory=list)
