"""The one interface every provider adapter implements, and what adapters produce.

An adapter is one file: it authenticates the raw request, parses the verified bytes into its
own event, interprets that event against what earlier events said about the call (the call
legs), and chooses the body the provider expects back. The service does the rest: storage,
deduplication, forwards. Registering it is one line in `telephony/__init__.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl

from starlette.responses import Response

from shared.contracts import Accepted, Language
from shared.jsonutil import ORJSONResponse

if TYPE_CHECKING:
    from services.intake.models import CallLeg
    from services.intake.settings import IntakeSettings

# `requested`: the caller asked for a callback while waiting in the phone queue (§11);
# `voicemail`: a piece of a voicemail they left (its recording, its transcript, or both).
Outcome = Literal["missed", "answered", "ignored", "requested", "voicemail"]

#: Longest transcript kept (characters); a longer one is cut, never refused (docs/api.md).
TRANSCRIPT_MAX_CHARS = 2000


def cut_transcript(text: str | None) -> str | None:
    """A transcript as kept: stripped, cut to `TRANSCRIPT_MAX_CHARS`; None when it says nothing."""
    kept = (text or "").replace("\x00", "").strip()
    return kept[:TRANSCRIPT_MAX_CHARS].rstrip() or None


#: A queue key as a contact may name it (DESIGN §9). Intake does not know which queues exist:
#: an unknown key is callback's to resolve, so any short single line passes.
QUEUE_MAX_LENGTH = 200


def queue_key(value: str | None) -> str | None:
    """A queue key given in a body, stripped; None when it says nothing."""
    key = (value or "").strip()
    return key or None


def has_controls(value: str) -> bool:
    """Whether `value` holds a control character (never part of a key, a number or an id)."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)


def url_queue(query: str) -> tuple[str | None, str | None]:
    """The `?queue=` of a webhook URL, and the reason it was ignored, if it was.

    The URL is the operator's configuration, not the call: a key that cannot be one must not
    cost the customer their callback, so it is set aside (and the reason kept) rather than
    the delivery rejected. A replay reads the same stored query and decides the same.
    """
    values = [value for name, value in parse_qsl(query, keep_blank_values=True) if name == "queue"]
    if not values:
        return None, None
    key = queue_key(values[-1])
    if key is None:
        return None, None
    if len(key) > QUEUE_MAX_LENGTH or has_controls(key):
        return None, f"?queue=: at most {QUEUE_MAX_LENGTH} characters, no control characters"
    return key, None


@dataclass(frozen=True, slots=True)
class VoicemailFacts:
    """What one request says about the voicemail a caller left; any part may be missing."""

    recording_url: str | None = None
    recording_sid: str | None = None
    duration: int | None = None
    transcript: str | None = None
    # True when the request says all its sender will ever say of the caller (the generic
    # webhook): no number then means withheld, not "not yet known".
    whole: bool = False


@dataclass(frozen=True, slots=True)
class CallReport:
    """One inbound call as intake understands it, before phone normalisation."""

    provider: str
    call_id: str
    outcome: Outcome
    caller: str | None
    # The number the customer dialed, as sent; never a child leg's (that is the agent). With
    # the queue the contact names (a key), it is what callback routes by (DESIGN §9).
    callee: str | None
    occurred_at: datetime
    status: str
    queue: str | None = None
    # What the telephony system knows about the caller (e.g. from its CRM lookup), if anything.
    email: str | None = None
    name: str | None = None
    language: Language | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # `requested`: when the caller entered the phone queue (their place, §11).
    queued_at: datetime | None = None
    voicemail: VoicemailFacts | None = None


class PayloadRejected(Exception):
    """The payload was authentic but unusable; it is stored with this reason."""

    def __init__(self, reason: str, *, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class NotConfigured(Exception):
    """The provider has no secret configured: every request is refused (403)."""


class Unauthenticated(Exception):
    """The request is not provably from the provider (401); the reason is safe to show."""


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """A request as it arrived: raw bytes, lower-cased headers, path and query string."""

    body: bytes
    content_type: str | None
    headers: Mapping[str, str]
    path: str = ""
    query: str = ""
    path_params: Mapping[str, str] = field(default_factory=dict)


EventT = TypeVar("EventT")


@dataclass(frozen=True, slots=True)
class Delivery(Generic[EventT]):
    """A parsed request: the provider's event and the key that makes a redelivery a duplicate."""

    event: EventT
    # Unique per provider for one delivery of one event (a retry repeats it).
    external_id: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Decision:
    """What a delivery means, given what is known about its call."""

    report: CallReport | None
    # The leg whose outcome `report` is: each outcome of a call is reported once.
    leg: CallLeg | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class LegStore(Protocol):
    """Call legs of one provider, locked for the rest of the transaction once opened."""

    async def open(self, call_id: str) -> tuple[CallLeg, bool]:
        """The leg (created empty when unknown, then `True`), locked against concurrent events."""
        ...


class Provider(ABC, Generic[EventT]):
    """One telephony system's webhook."""

    #: The `provider` column value and metric label.
    name: str
    #: Route under `/v1/webhooks` (may hold path parameters, e.g. `/cti/{token}`).
    route: str
    summary: str = ""
    #: OpenAPI request body description, when the adapter can give one.
    openapi_body: ClassVar[dict[str, Any] | None] = None
    #: True when the webhook URL may name the queue (`?queue=`, DESIGN §9).
    queue_in_url: ClassVar[bool] = False
    #: True when `interpret` never opens a call leg: then intake decides everything before
    #: touching the database and stores the delivery in one statement.
    stateless: ClassVar[bool] = False

    @abstractmethod
    def authenticate(self, settings: IntakeSettings, request: ProviderRequest) -> str | None:
        """Verify the raw request (raise `NotConfigured`/`Unauthenticated`).

        Return the sender's delivery id when the scheme has one (replays of it are duplicates).
        """

    @abstractmethod
    def parse(self, request: ProviderRequest) -> Delivery[EventT]:
        """The verified bytes as this provider's event, or `PayloadRejected`."""

    def needs_legs(self, delivery: Delivery[EventT]) -> bool:
        """Whether this delivery needs the call's legs (then a stateless provider's fast path
        steps aside for the general one)."""
        return not self.stateless

    async def interpret(self, delivery: Delivery[EventT], legs: LegStore) -> Decision:
        """What the event means for the customer; stateless providers need no legs."""
        raise NotImplementedError

    def respond(self, request: ProviderRequest, accepted: Accepted) -> Response:
        """The answer the provider expects; DESIGN §3.1's 202 JSON unless it wants otherwise."""
        return ORJSONResponse(accepted.model_dump(exclude_none=True), status_code=202)

    def respond_rejected(self, request: ProviderRequest, inbound_id: str) -> Response | None:
        """A body to answer a kept-but-rejected payload with; None for the usual problem."""
        return None
