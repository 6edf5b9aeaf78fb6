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

from starlette.responses import Response

from shared.contracts import Accepted, Language
from shared.jsonutil import ORJSONResponse

if TYPE_CHECKING:
    from services.intake.models import CallLeg
    from services.intake.settings import IntakeSettings

Outcome = Literal["missed", "answered", "ignored"]


@dataclass(frozen=True, slots=True)
class CallReport:
    """One inbound call as intake understands it, before phone normalisation."""

    provider: str
    call_id: str
    outcome: Outcome
    caller: str | None
    callee: str | None
    occurred_at: datetime
    status: str
    queue: str | None = None
    # What the telephony system knows about the caller (e.g. from its CRM lookup), if anything.
    email: str | None = None
    name: str | None = None
    language: Language | None = None
    details: dict[str, Any] = field(default_factory=dict)


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

    async def interpret(self, delivery: Delivery[EventT], legs: LegStore) -> Decision:
        """What the event means for the customer; stateless providers need no legs."""
        raise NotImplementedError

    def respond(self, request: ProviderRequest, accepted: Accepted) -> Response:
        """The answer the provider expects; DESIGN §3.1's 202 JSON unless it wants otherwise."""
        return ORJSONResponse(accepted.model_dump(exclude_none=True), status_code=202)

    def respond_rejected(self, request: ProviderRequest, inbound_id: str) -> Response | None:
        """A body to answer a kept-but-rejected payload with; None for the usual problem."""
        return None
