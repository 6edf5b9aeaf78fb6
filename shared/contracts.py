"""The JSON contracts services exchange over HTTP (DESIGN §3.3, §4.1, §5), as pydantic models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    model_validator,
)

from shared.outbox import BatchRoute
from shared.vocabulary import (
    CallbackStatus,
    ClosingOutcome,
    DialLeg,
    EventType,
    LegStatus,
    OfferReason,
)
from shared.vocabulary import Channel as Channel
from shared.vocabulary import Direction as Direction
from shared.vocabulary import Language as Language

EVENT_TYPES = frozenset(EventType)
# Integrations may record their own kinds of event, in a namespace that cannot clash with ours.
_EXTENSION_TYPE = re.compile(r"^x-[a-z0-9][a-z0-9_.\-]{0,62}$")


def _event_type(value: str) -> str:
    if value in EVENT_TYPES or _EXTENSION_TYPE.match(value):
        return value
    raise ValueError("unknown event type; use one of the documented types or an `x-` prefix")


# A type as an event may carry it: one of ours, or an integration's own under `x-`.
EventTypeField = Annotated[str, AfterValidator(_event_type)]

# Times ringback can store and compute with: PostgreSQL and Python agree on this range, and a
# date outside it is a typo or an attack, never a customer's call.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _plausible_time(value: datetime) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the supported range") from None
    if not _EARLIEST <= in_utc < _LATEST:
        raise ValueError("the time must be between 1970 and 2200")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible_time)]

_INT64 = 2**63


def _storable(value: Any, depth: int = 0) -> None:
    """Refuse what PostgreSQL or our JSON encoder cannot hold: NUL in text, ints over 64 bits."""
    if depth > 64:
        raise ValueError("the document is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text may not contain NUL characters")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError("integers must fit in 64 bits")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _storable(item, depth + 1)


ShortText = Annotated[str, Field(max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unstorable(cls, data: Any) -> Any:
        # Checked on the raw input, so every field (free-form `data` included) is covered.
        _storable(data)
        return data


class CustomerRef(_Strict):
    """Whatever identifies the customer; history resolves it to one customer."""

    phone: Annotated[str, Field(max_length=32)] | None = None
    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    name: ShortText | None = None
    external_id: ShortText | None = None
    language: Language | None = None


class Ref(_Strict):
    kind: Annotated[str, Field(max_length=32)]
    id: Annotated[str, Field(max_length=64)] | None = None


# History's batch endpoint for events: what an outbox relay may send together. Nobody waits
# on an event's arrival the way a caller waits for the confirmation, so events gather for
# half a second: at 30 calls a second a quarter second halved history's CPU per call, and
# half a second took another 1.4-2.1 ms (a fifth) off it (bench/RESULTS.md). A timeline, its
# live stream and the webhooks out show a call at most that much later.
EVENTS_BATCH = BatchRoute(
    path="/v1/events",
    batch_path="/v1/events:batch",
    field="events",
    max_items=500,
    gather_seconds=0.5,
)
# Callback's batch endpoint for creates: what intake's relay sends together. Each create is a
# transaction of its own there, so a hundred keeps a batch's answer well within a second.
CALLBACKS_BATCH = BatchRoute(
    path="/v1/callbacks", batch_path="/v1/callbacks:batch", field="callbacks", max_items=100
)


class CallbackState(BaseModel):
    """Where a callback stands: the `data` of every callback lifecycle event, read by history.

    Callback builds it from the row (`services.callback.events.where_it_stands`); history
    validates it on arrival to show open and closed callbacks. Optional fields are optional
    because events stored before a field existed lack it.
    """

    model_config = ConfigDict(extra="ignore")

    status: CallbackStatus
    due_at: AwareDatetime | None = None
    sla_deadline: AwareDatetime | None = None
    # History measures time to reach from here; it survives merges and retries unchanged.
    first_contact_at: AwareDatetime | None = None
    agent_id: str | None = None
    slot_start: AwareDatetime | None = None
    slot_end: AwareDatetime | None = None
    contact_count: int | None = None
    attempts: int | None = None
    outcome: ClosingOutcome | None = None
    flag: str | None = None
    # v2 (§9): the queue it belongs to (absent on older events: `default`), how urgent, and
    # whether the agent who reached the customer is the one they last spoke with.
    queue: str | None = None
    priority: int | None = None
    same_agent: bool | None = None


class EventIn(_Strict):
    """One entry on a customer's timeline (history `POST /v1/events`)."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    occurred_at: Timestamp
    channel: Channel
    direction: Direction
    type: EventTypeField
    customer: CustomerRef
    subject: Ref | None = None
    actor: Ref | None = None
    summary: Annotated[str, Field(max_length=500)] = ""
    data: dict[str, Any] = Field(default_factory=dict)


class PreferredTime(_Strict):
    """When the customer wants the call: as soon as possible, a slot, or a window."""

    asap: bool | None = None
    slot_id: Annotated[str, Field(max_length=64)] | None = None
    not_before: Timestamp | None = None
    not_after: Timestamp | None = None


class Consent(_Strict):
    sms: bool = True
    email: bool = True


class CallbackCreate(_Strict):
    """Ask callback to call a customer back (callback `POST /v1/callbacks`)."""

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    source: Literal["missed_call", "contact_request"]
    channel: Channel = Channel.PHONE
    first_contact_at: Timestamp
    phone: Annotated[str, Field(max_length=32)]
    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    name: ShortText | None = None
    language: Language | None = None
    message: Annotated[str, Field(max_length=2000)] | None = None
    preferred: PreferredTime = Field(default_factory=lambda: PreferredTime(asap=True))
    consent: Consent = Field(default_factory=Consent)
    # The queue the contact names (a key; unknown keys go to `default`, the reason kept) and
    # the number the customer dialed, E.164 (the queue owning it is the next choice, §9).
    queue: ShortText | None = None
    dialed: Annotated[str, Field(max_length=32)] | None = None
    inbound_id: Annotated[str, Field(max_length=64)] | None = None
    # Higher first (§9); an agent may keep a callback for themself until `owner_until`.
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    owner_agent_id: Annotated[str, Field(max_length=64)] | None = None
    owner_until: Timestamp | None = None
    # §11, asked for while waiting in the phone queue: the place is kept from `queued_at`,
    # and `estimated_callback_at` is the time spoken to the caller (their promise).
    queued_at: Timestamp | None = None
    estimated_callback_at: Timestamp | None = None


class VoicemailIn(_Strict):
    """A voicemail a caller left, or its transcript come later (callback `POST /v1/voicemails`,
    §11). Keyed on the call (`provider`, `call_id`): every delivery for one call updates one
    voicemail. `callback` asks for the caller's callback the way their missed call does; its
    `request_id` is the call's own, so a voicemail joins the callback the call already made."""

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    provider: Annotated[str, Field(min_length=1, max_length=32)]
    call_id: Annotated[str, Field(min_length=1, max_length=200)]
    occurred_at: Timestamp
    phone: Annotated[str, Field(max_length=32)] | None = None
    recording_url: Annotated[str, Field(max_length=2000)] | None = None
    recording_sid: Annotated[str, Field(max_length=64)] | None = None
    duration: Annotated[int, Field(ge=0, le=24 * 3600)] | None = None
    transcript: Annotated[str, Field(max_length=2000)] | None = None
    callback: CallbackCreate | None = None


class QueueOffer(BaseModel):
    """Whether to offer a callback to a caller still waiting in the phone queue (callback
    `GET /v1/queues/{key}/offer`, forwarded by intake; intake's wait TwiML reads it, §11)."""

    model_config = ConfigDict(extra="ignore")

    offer: bool
    reason: OfferReason | None = None
    # When an agent would start the call, by the computation that books ASAP callbacks;
    # null when nobody in the planned horizon would.
    estimated_callback_at: AwareDatetime | None = None
    # Open callbacks waiting in the queue now, and the place (1 = next) a callback asked
    # for now would take among them.
    waiting: int
    position: int
    # How long a caller waits in the phone queue before the offer is spoken.
    min_wait_seconds: int = 0


class Accepted(BaseModel):
    """The answer to a webhook or contact request (DESIGN §3.1)."""

    id: str
    status: Literal["accepted", "duplicate", "recorded"]
    callback_url: str | None = None


class AnsweredCall(_Strict):
    """An inbound call someone answered (callback `POST /v1/answered-calls`).

    The customer got through another way: an open callback for this number is completed
    as `reached_inbound` (DESIGN §4.1).
    """

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    phone: Annotated[str, Field(max_length=32)]
    occurred_at: Timestamp
    inbound_id: Annotated[str, Field(max_length=64)] | None = None
    # Which queue's callbacks it completes, chosen as for a new contact (§9).
    queue: ShortText | None = None
    dialed: Annotated[str, Field(max_length=32)] | None = None


class Acknowledgement(_Strict):
    """A contact with an email and no phone (callback `POST /v1/acknowledgements`).

    There is nobody to call back; the customer gets an email confirmation (DESIGN §3.2).
    """

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    email: Annotated[EmailStr, Field(max_length=254)]
    name: ShortText | None = None
    language: Language | None = None
    channel: Channel = Channel.WEB
    received_at: Timestamp


class ErasureRequest(_Strict):
    """Forget a person (callback and intake `POST /v1/erasures`), sent by history (DESIGN §5).

    Idempotent on `id`; the receiver erases every record with one of these identities.
    """

    id: Annotated[str, Field(min_length=1, max_length=64)]
    phones: Annotated[list[Annotated[str, Field(max_length=32)]], Field(max_length=100)] = []
    emails: Annotated[list[Annotated[EmailStr, Field(max_length=254)]], Field(max_length=100)] = []
    requested_at: Timestamp


class DialEvent(_Strict):
    """What the phone system said of one leg of a dial, as intake forwards it to callback
    (`POST /v1/dials/{dial_id}/events`, DESIGN §10): the webhook dialer's words, Twilio's
    translated into them."""

    leg: DialLeg
    status: LegStatus
    occurred_at: Timestamp
    duration: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None
    # The phone system's id of the leg (Twilio's CallSid), to match a lost request's call.
    call_id: Annotated[str, Field(max_length=64)] | None = None


class DialBridge(BaseModel):
    """Callback's answer when the agent pressed 1: whom to call, showing which number."""

    customer_phone: str
    caller_id: str
    machine_detection: bool
    ring_seconds: int


# The longest survey comment kept (DESIGN §13): callback cuts a longer one, and intake's API
# description of the self-service form states it.
SURVEY_COMMENT_MAX: Final = 1000


class InboundSms(_Strict):
    """An SMS a customer sent us (a survey reply, STOP), forwarded by intake to callback."""

    # Intake's inbound id: the natural key, so a forward delivered twice is handled once.
    id: Annotated[str, Field(min_length=1, max_length=64)]
    # The customer's number as the gateway wrote it (callback reads it in E.164).
    sender: Annotated[str, Field(min_length=1, max_length=64)]
    to: Annotated[str, Field(max_length=64)] | None = None
    text: Annotated[str, Field(max_length=1600)] = ""
    received_at: AwareDatetime
