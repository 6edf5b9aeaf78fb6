"""The generic CTI format of open-source helpdesks (`POST /v1/webhooks/cti/{token}`).

Events `newCall`, `answer`, `hangup` per `callId`, JSON or form-encoded. They arrive out of
order and twice: the call legs table remembers what each call did, so a missed call is an
inbound `hangup` with no `answer` before it (cause not `forwarded`), an `answer` after the
hangup changes nothing, and a hangup for a call we never heard of still counts when its cause
says nobody picked up.

The queue is the event's `queue`, else one an earlier event of the call named, else the
webhook URL's `?queue=` (the token stays in the path). The number dialed is `to`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.intake.telephony.base import (
    CallReport,
    Decision,
    Delivery,
    LegStore,
    NotConfigured,
    PayloadRejected,
    Provider,
    ProviderRequest,
    Unauthenticated,
    has_controls,
    queue_key,
    url_queue,
)
from shared.db import utcnow
from shared.errors import validation_errors
from shared.jsonutil import loads
from shared.routing import is_json_media_type

if TYPE_CHECKING:
    from services.intake.settings import IntakeSettings

# Causes that say nobody picked up: enough to call a hangup of an unknown call missed.
NOT_ANSWERED_CAUSES = frozenset({"cancel", "noAnswer", "busy", "congestion"})
_FORM = "application/x-www-form-urlencoded"
Short = Annotated[str, Field(max_length=64)]


class CtiEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)

    event: Literal["newCall", "answer", "hangup"]
    call_id: Annotated[
        str,
        Field(min_length=1, max_length=128, validation_alias=AliasChoices("callId", "call_id")),
    ]
    direction: Literal["in", "out"]
    from_: Annotated[Short | None, Field(alias="from")] = None
    to: Short | None = None
    user: (
        Annotated[str, Field(max_length=200)] | list[Annotated[str, Field(max_length=200)]] | None
    ) = None
    queue: Annotated[str, Field(max_length=200)] | None = None
    cause: Short | None = None
    answering_number: Annotated[
        Short | None,
        Field(validation_alias=AliasChoices("answeringNumber", "answering_number")),
    ] = None

    @field_validator("user")
    @classmethod
    def _few_users(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 20:
            raise ValueError("at most 20 users")
        return value


def _document(request: ProviderRequest) -> dict[str, Any]:
    media = (request.content_type or "").split(";", 1)[0].strip().lower()
    if is_json_media_type(media):
        try:
            document = loads(request.body)
        except ValueError:
            raise PayloadRejected("the body is not valid JSON", status=400) from None
        if not isinstance(document, dict):
            raise PayloadRejected("the JSON body must be an object")
        return document
    if media == _FORM:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadRejected("the body is not valid UTF-8", status=400) from None
        form: dict[str, Any] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            key = name.removesuffix("[]")
            if key == "user":
                form.setdefault("user", []).append(value)
            else:
                form[key] = value
        if isinstance(form.get("user"), list) and len(form["user"]) == 1:
            form["user"] = form["user"][0]
        return form
    raise PayloadRejected(f"send the body as application/json or {_FORM}", status=415)


def parse_event(request: ProviderRequest) -> CtiEvent:
    document = _document(request)
    try:
        event = CtiEvent.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in validation_errors(exc.errors())
        )
        raise PayloadRejected(f"the body does not match the CTI format: {problems}") from None
    for value in (event.call_id, event.from_, event.to, event.cause):
        if value and any(ord(c) < 32 for c in value):
            raise PayloadRejected("fields must not hold control characters")
    if event.queue and has_controls(event.queue):
        raise PayloadRejected("queue: must not hold control characters")
    return event.model_copy(update={"queue": queue_key(event.queue)})


@dataclass(frozen=True, slots=True)
class CtiDelivery:
    """An event and the queue its webhook URL names (`?queue=`), kept apart from the body."""

    event: CtiEvent
    url_queue: str | None = None


class CtiProvider(Provider[CtiDelivery]):
    name = "cti"
    route = "/cti/{token}"
    summary = "A call event in the generic CTI format (newCall, answer, hangup)"
    queue_in_url: ClassVar[bool] = True
    openapi_body: ClassVar[dict[str, Any] | None] = {
        "required": True,
        "content": {
            "application/json": {"schema": CtiEvent.model_json_schema(by_alias=True)},
            _FORM: {"schema": {"type": "object"}},
        },
    }

    def authenticate(self, settings: IntakeSettings, request: ProviderRequest) -> str | None:
        configured = settings.cti_token.get_secret_value() if settings.cti_token else ""
        if not configured:
            raise NotConfigured("CTI webhooks are not enabled: RINGBACK_CTI_TOKEN is not set.")
        offered = request.path_params.get("token", "")
        if not hmac.compare_digest(offered.encode(), configured.encode()):
            raise Unauthenticated("The CTI token in the path is not the configured one.")
        return None

    def parse(self, request: ProviderRequest) -> Delivery[CtiDelivery]:
        event = parse_event(request)
        queue, ignored = url_queue(request.query)
        summary: dict[str, Any] = {"event": event.event, "direction": event.direction}
        if event.cause:
            summary["cause"] = event.cause
        if ignored:
            summary["queue_ignored"] = ignored
        # Each event of a call happens once; a repeat is a redelivery.
        return Delivery(
            event=CtiDelivery(event, queue),
            external_id=f"{event.call_id}:{event.event}",
            summary=summary,
        )

    async def interpret(self, delivery: Delivery[CtiDelivery], legs: LegStore) -> Decision:
        event = delivery.event.event
        leg, unknown = await legs.open(event.call_id)
        leg.direction = leg.direction or event.direction
        if leg.caller is None and event.from_:
            leg.caller = event.from_
        # A helpdesk may send `to` and `queue` with the newCall only: the hangup needs them.
        if leg.callee is None and event.to:
            leg.callee = event.to
        if leg.queue is None and event.queue:
            leg.queue = event.queue
        # The body's word beats the URL's, which is the same for every call posted to it.
        queue = event.queue or leg.queue or delivery.event.url_queue
        inbound = leg.direction == "in"
        if event.event == "newCall":
            return Decision(report=None)
        if event.event == "answer":
            if leg.ended_at is not None:
                return Decision(report=None, notes={"reason": "answer after hangup"})
            leg.answered_at = leg.answered_at or utcnow()
            if not inbound:
                return Decision(report=None)
            report = self._report(event, leg.caller, leg.callee, queue, "answered")
            return Decision(report=report, leg=leg)
        # hangup
        leg.ended_at = leg.ended_at or utcnow()
        cause = event.cause or "normalClearing"
        if leg.answered_at is not None or not inbound:
            return Decision(report=None)
        if cause == "forwarded":
            return Decision(report=None, notes={"reason": "forwarded"})
        if unknown and cause not in NOT_ANSWERED_CAUSES:
            # No newCall was seen and the cause does not say nobody answered.
            return Decision(report=None, notes={"reason": "unknown call, cause not missed"})
        report = self._report(event, leg.caller, leg.callee, queue, "missed")
        return Decision(report=report, leg=leg)

    def _report(
        self,
        event: CtiEvent,
        caller: str | None,
        callee: str | None,
        queue: str | None,
        outcome: str,
    ) -> CallReport:
        return CallReport(
            provider=self.name,
            call_id=event.call_id,
            outcome="missed" if outcome == "missed" else "answered",
            caller=caller,
            callee=callee,
            occurred_at=utcnow(),
            status=event.cause or event.event,
            queue=queue,
        )
