"""Our own signed JSON format (`POST /v1/webhooks/generic`, DESIGN §3.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from services.intake.telephony.base import (
    QUEUE_MAX_LENGTH,
    CallReport,
    Decision,
    Delivery,
    LegStore,
    NotConfigured,
    Outcome,
    PayloadRejected,
    Provider,
    ProviderRequest,
    Unauthenticated,
    VoicemailFacts,
    cut_transcript,
    has_controls,
    queue_key,
)
from shared import standard_webhooks
from shared.contracts import Language, Timestamp
from shared.errors import validation_errors
from shared.jsonutil import loads
from shared.routing import is_json_media_type

if TYPE_CHECKING:
    from services.intake.settings import IntakeSettings

MISSED_STATUSES = frozenset({"missed", "no_answer", "busy", "abandoned"})
# Statuses that are not the call's outcome but something more about it (§11): each is its own
# record beside the call's one missed or answered call (deduplicated on call id and status).
REQUESTED = "callback_requested"
VOICEMAIL = "voicemail"
_SIDE_STATUSES = frozenset({REQUESTED, VOICEMAIL})
_LONGEST_RECORDING = 24 * 3600


class KnownCaller(BaseModel):
    """`metadata.customer`: what the telephony system already knows about the caller."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    name: Annotated[str, Field(max_length=200)] | None = None
    language: Language | None = None


class GenericCallEvent(BaseModel):
    """The body a telephony integration posts to the generic webhook."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    id: Annotated[str, Field(min_length=1, max_length=128)]
    call_id: Annotated[str, Field(min_length=1, max_length=128)]
    from_: Annotated[str | None, Field(alias="from", max_length=64)] = None
    to: Annotated[str | None, Field(max_length=64)] = None
    status: Literal[
        "missed", "no_answer", "busy", "abandoned", "answered", "callback_requested", "voicemail"
    ]
    occurred_at: Timestamp
    queue: Annotated[str | None, Field(max_length=QUEUE_MAX_LENGTH)] = None
    metadata: dict[str, Any] | None = None
    # `callback_requested`: when the caller entered the phone queue (default `occurred_at`).
    queued_at: Timestamp | None = None
    # `voicemail`: where the recording is (fetched with no credentials), its length in seconds,
    # and its transcript if the PBX has one (cut to `TRANSCRIPT_MAX_CHARS`, never refused).
    recording_url: Annotated[str | None, Field(max_length=2000)] = None
    duration: Annotated[int | None, Field(ge=0, le=_LONGEST_RECORDING)] = None
    transcript: Annotated[str | None, Field(max_length=1_000_000)] = None

    @field_validator("recording_url")
    @classmethod
    def _recording_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.lower().startswith(("https://", "http://")) or has_controls(value):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _voicemail_has_recording(self) -> GenericCallEvent:
        if self.status == VOICEMAIL and self.recording_url is None:
            raise ValueError("a voicemail needs its recording_url")
        return self

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is not None and has_controls(value):
            raise ValueError("must not contain control characters")
        return queue_key(value)


def _problems(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in validation_errors(exc.errors())
    )


def parse(body: bytes) -> CallReport:
    """The call report in a verified body, or `PayloadRejected` saying what is wrong."""
    try:
        document = loads(body)
    except ValueError:
        raise PayloadRejected("the body is not valid JSON", status=400) from None
    try:
        event = GenericCallEvent.model_validate(document)
    except ValidationError as exc:
        raise PayloadRejected(
            f"the body does not match the generic call format: {_problems(exc)}"
        ) from None
    try:
        known = KnownCaller.model_validate((event.metadata or {}).get("customer") or {})
    except ValidationError as exc:
        raise PayloadRejected(_problems(exc, "metadata.customer.")) from None
    outcome: Outcome = "missed" if event.status in MISSED_STATUSES else "answered"
    voicemail: VoicemailFacts | None = None
    if event.status == REQUESTED:
        outcome = "requested"
    elif event.status == VOICEMAIL:
        outcome = "voicemail"
        voicemail = VoicemailFacts(
            recording_url=event.recording_url,
            duration=event.duration,
            transcript=cut_transcript(event.transcript),
            whole=True,
        )
    return CallReport(
        provider="generic",
        call_id=event.call_id,
        outcome=outcome,
        caller=event.from_,
        callee=event.to,
        occurred_at=event.occurred_at,
        status=event.status,
        queue=event.queue,
        email=known.email.lower() if known.email else None,
        name=known.name,
        language=known.language,
        details={"event_id": event.id},
        queued_at=(event.queued_at or event.occurred_at) if outcome == "requested" else None,
        voicemail=voicemail,
    )


class GenericProvider(Provider[CallReport]):
    """Standard Webhooks-signed JSON; the call id is the natural key of a call."""

    name = "generic"
    route = "/generic"
    summary = "A call event in our signed JSON format (Standard Webhooks)"
    openapi_body: ClassVar[dict[str, Any] | None] = {
        "required": True,
        "content": {"application/json": {"schema": GenericCallEvent.model_json_schema()}},
    }
    stateless: ClassVar[bool] = True

    def authenticate(self, settings: IntakeSettings, request: ProviderRequest) -> str | None:
        secrets = settings.webhook_secret_list()
        if not secrets:
            raise NotConfigured(
                "Generic webhooks are not enabled: RINGBACK_WEBHOOK_SECRETS is not set."
            )
        try:
            # Verified on the raw bytes, before anything is parsed.
            return standard_webhooks.verify(
                secrets=secrets,
                headers=request.headers,
                body=request.body,
                tolerance_seconds=settings.webhook_tolerance_seconds,
            )
        except standard_webhooks.SignatureError as exc:
            raise Unauthenticated(f"Webhook signature rejected: {exc}.") from None

    def parse(self, request: ProviderRequest) -> Delivery[CallReport]:
        if not is_json_media_type(request.content_type):
            raise PayloadRejected("the body must be application/json", status=415)
        report = parse(request.body)
        # One call is one missed call however often (and with whatever message id) it comes;
        # a request or a voicemail is one more record of it (§11), keyed on (call id, status).
        # A voicemail sent again with its transcript is news (it updates the voicemail).
        key = report.call_id
        if report.status in _SIDE_STATUSES:
            key = f"{report.call_id}:{report.status}"
            if report.voicemail is not None and report.voicemail.transcript is not None:
                key += ":transcript"
        return Delivery(event=report, external_id=key[:200], summary={"status": report.status})

    def needs_legs(self, delivery: Delivery[CallReport]) -> bool:
        # A voicemail joins its call's record on the call's leg (`services.intake.voicemail`).
        return delivery.event.outcome == "voicemail"

    async def interpret(self, delivery: Delivery[CallReport], legs: LegStore) -> Decision:
        report = delivery.event
        if report.outcome != "voicemail":
            return Decision(report=report)
        leg, _ = await legs.open(report.call_id)
        if leg.caller is None and report.caller:
            leg.caller = report.caller[:64]
        if leg.callee is None and report.callee and len(report.callee) <= 64:
            leg.callee = report.callee
        if leg.queue is None and report.queue:
            leg.queue = report.queue
        return Decision(report=report, leg=leg)
