"""What callback's API takes and answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.agent_ids import AGENT_ID_MAX_LENGTH, AGENT_ID_PATTERN
from shared.contracts import CALLBACKS_BATCH, CallbackCreate
from shared.vocabulary import (
    AttemptOutcome,
    CallbackStatus,
    ClosingOutcome,
    Dialer,
    DialStatus,
    Language,
    LineResult,
    NotificationChannel,
    NotificationStatus,
)

AgentId = Annotated[str, Field(max_length=AGENT_ID_MAX_LENGTH, pattern=AGENT_ID_PATTERN)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CallbackCreated(BaseModel):
    """The answer to `POST /v1/callbacks`: 201 new, 200 merged or repeated, 202 do-not-call.

    A number on the do-not-call list gets no callback: `id` is null and `status` says why.
    """

    id: str | None
    status: CallbackStatus | Literal[ClosingOutcome.DO_NOT_CALL, ClosingOutcome.NUMBER_NOT_CALLABLE]
    merged: bool
    contact_count: int
    due_at: datetime | None
    sla_deadline: datetime | None
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    flag: str | None = None


class CallbackBatchIn(BaseModel):
    """`POST /v1/callbacks:batch`: creates as `POST /v1/callbacks` takes them, validated as a
    whole before any is made."""

    model_config = ConfigDict(extra="forbid")

    callbacks: Annotated[
        list[CallbackCreate], Field(min_length=1, max_length=CALLBACKS_BATCH.max_items)
    ]


class CallbackBatchItem(BaseModel):
    request_id: str
    # What `POST /v1/callbacks` would have answered for this item alone: 201, 200 or 202.
    code: int
    callback: CallbackCreated


class CallbackBatchOut(BaseModel):
    """Per-item results, in the order the creates were sent."""

    items: list[CallbackBatchItem]


class ConsentOut(BaseModel):
    sms: bool
    email: bool


class NotificationOut(BaseModel):
    """A message to the customer and how far it got (no text, no recipient)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    callback_id: str | None = None
    kind: str
    channel: NotificationChannel
    provider: str
    status: NotificationStatus
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationList(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    number: int
    agent_id: str
    outcome: AttemptOutcome
    wrap_up_code: str | None = None
    note: str | None
    next_attempt_at: datetime | None
    # False while it is the line's proposal (§10): the agent confirms or corrects it, or it
    # becomes final by itself at `finalize_at`; only a final attempt takes effect.
    final: bool = True
    finalize_at: datetime | None = None
    proposed_outcome: AttemptOutcome | None = None
    dial_id: str | None = None
    created_at: datetime


class DialOut(BaseModel):
    """A call placed through the phone system for this callback, and how far it got."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    agent_id: str
    dialer: Dialer
    status: DialStatus
    line_result: LineResult | None = None
    reason: str | None = None
    error: str | None = None
    agent_confirmed_at: datetime | None = None
    customer_answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    created_at: datetime
    updated_at: datetime


class DialStarted(BaseModel):
    """`POST /v1/callbacks/{id}/dial`: the dial is stored; the phone system rings the agent."""

    dial_id: str
    status: DialStatus


class UnverifiedContact(BaseModel):
    """What a later contact said: anyone who knows the number can send one, so it is shown as
    given, never used to reach the customer (no link, reminder or notice goes to its email)."""

    label: Literal["given on a later contact, unverified"] = "given on a later contact, unverified"
    email: str | None
    name: str | None
    message: str | None
    given_at: datetime


class CallbackOut(BaseModel):
    id: str
    phone: str
    queue: str
    # Why a contact that named a queue is in this one instead (an unknown key).
    queue_reason: str | None = None
    email: str | None
    name: str | None
    language: Language
    # False when the language was only the default: anyone in the queue may take it.
    language_known: bool = True
    status: CallbackStatus
    source: str
    channel: str
    priority: int
    # The claim order after priority: when the caller entered the phone queue, else `due_at`.
    rank_at: datetime
    # What the customer was promised: the end of the booked slot, else the time spoken to
    # them in the phone queue (§11), else the SLA deadline.
    promised_by: datetime
    # Asked for while waiting in the phone queue (§11): its place is kept from `queued_at`.
    requested_in_queue: bool = False
    queued_at: datetime | None = None
    owner_agent_id: str | None = None
    owner_until: datetime | None = None
    first_contact_at: datetime
    due_at: datetime
    sla_deadline: datetime
    contact_count: int
    consent: ConsentOut
    message: str | None
    unverified: UnverifiedContact | None = None
    last_confirmation_at: datetime | None
    asap: bool
    slot_id: str | None
    slot_start: datetime | None
    slot_end: datetime | None
    flag: str | None
    agent_id: str | None
    lease_expires_at: datetime | None
    attempt_count: int
    outcome: ClosingOutcome | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class VoicemailOut(BaseModel):
    """A voicemail the caller left (§11); its audio is behind `audio_url` (callbacks:read)."""

    id: str
    occurred_at: datetime
    duration: int | None
    transcript: str | None
    audio_url: str | None


class CallbackDetail(CallbackOut):
    attempts: list[AttemptOut]
    notifications: list[NotificationOut]
    # Newest first.
    dials: list[DialOut] = Field(default_factory=list)
    voicemails: list[VoicemailOut] = Field(default_factory=list)


class CallbackList(BaseModel):
    items: list[CallbackOut]
    next_cursor: str | None


class SlotOut(BaseModel):
    """A slot: RFC 3339 UTC bounds, the same in local time, and what is left in it."""

    id: str
    start: datetime
    end: datetime
    local_start: str
    local_end: str
    label: str
    capacity: int
    booked: int
    available: int


class SlotList(BaseModel):
    items: list[SlotOut]
    timezone: str
    slot_minutes: int | None


class AgentIn(_In):
    # May be left out with a key bound to an agent (§9): the key says who acts.
    agent_id: AgentId | None = None


class BookIn(_In):
    slot_id: Annotated[str, Field(min_length=1, max_length=64)]
    agent_id: AgentId | None = None


class CancelIn(_In):
    reason: Annotated[str, Field(max_length=200)] | None = None
    notify: bool = True
    agent_id: AgentId | None = None


class NextTry(_In):
    """When to try next, as agreed with the customer; `owner`: the agent keeps it."""

    at: AwareDatetime
    owner: bool = False


class AttemptIn(_In):
    agent_id: AgentId | None = None
    outcome: AttemptOutcome
    note: Annotated[str, Field(max_length=2000)] | None = None
    # Required for `rescheduled`; for a retry outcome it replaces the queue's retry wait.
    next: NextTry | None = None
    wrap_up_code: Annotated[str, Field(max_length=64)] | None = None


class DialIn(_In):
    agent_id: AgentId | None = None
    # Needed to dial outside the queue's hours: why the customer is called now.
    reason: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class AttemptPatch(_In):
    """The agent's word on the line's proposal: confirm it as it is, or correct it."""

    agent_id: AgentId | None = None
    final: Literal[True]
    outcome: AttemptOutcome | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None
    next: NextTry | None = None
    wrap_up_code: Annotated[str, Field(max_length=64)] | None = None


class KeyOut(BaseModel):
    """The key a request came with: what the console needs to know about its user."""

    name: str
    scopes: list[str]
    # Set for a key bound to one agent: every agent action acts as them.
    agent_id: str | None
    # What places calls (§10): the console shows a Call button unless `none`.
    dialer: Dialer = Dialer.NONE


class AttemptResult(BaseModel):
    attempt: AttemptOut
    callback: CallbackOut


class SelfServiceAction(_In):
    action: Literal["cancel", "rebook"]
    slot_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class SelfServiceSlot(BaseModel):
    """A time the customer may rebook to: its `id` is the `slot_id` to post."""

    id: str
    start: datetime
    end: datetime
    # The window in the view's language, as `when` would name it once booked.
    label: str


class SelfServiceView(BaseModel):
    """What the customer sees through their link: no agent, no notes, no other callbacks."""

    status: CallbackStatus
    asap: bool
    due_at: datetime
    sla_deadline: datetime
    slot_id: str | None
    slot_start: datetime | None
    slot_end: datetime | None
    when: str
    language: Language
    can_cancel: bool
    can_rebook: bool
    # Rebooks the link still allows today; at 0 the page asks the customer to call instead.
    rebooks_left_today: int
    # Times to rebook to: empty whenever `can_rebook` is false, so an API client needs no
    # staff key to find a slot (the page offers the same list).
    free_slots: list[SelfServiceSlot]
    # Whose slots the page offers; the queue's key is ours, not the customer's business.
    queue: str = Field(default="default", exclude=True)
    # The zone the page groups `free_slots` into days by (the capacity plan's).
    timezone: str = Field(exclude=True)


class AnsweredCallResult(BaseModel):
    status: Literal["completed", "no_open_callback", "disabled"]
    callback_id: str | None = None


class AcknowledgementResult(BaseModel):
    # `ceiling_reached`: the address had its day's share of email (`ceilings`); recorded.
    status: Literal["queued", "no_consent", "ceiling_reached"]
    notification_id: str | None = None


class ErasureResult(BaseModel):
    id: str
    callbacks: int
    cancelled: int
    notifications: int
    attempts: int
    outbox: int
    # Voicemails forgotten, their recordings deleted at the provider (§11).
    voicemails: int = 0


class DoNotCallOut(BaseModel):
    phone: str
    created_at: datetime
    # The first of `cancelled_callback_ids` (v1 had one queue, so one at most).
    cancelled_callback_id: str | None = None
    cancelled_callback_ids: list[str] = Field(default_factory=list)
