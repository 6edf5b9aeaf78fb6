"""What the phone system reports of a dial (§10): Twilio's signed callbacks and the webhook
dialer's signed reports, verified, stored in the outbox and forwarded to callback.

Each report is stored (as the outbox row that forwards it, in the dial's order) before it is
answered. Twilio's own words are translated here, once, into the webhook dialer's; callback
reads only those. Twilio's forms carry the agent's and the customer's numbers: they are not
kept, since nothing downstream needs them.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
import structlog
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from services.intake.metrics import IntakeMetrics
from services.intake.models import IntakeOutbox
from services.intake.settings import IntakeSettings
from services.intake.telephony.base import Unauthenticated
from services.intake.telephony.twilio import verify as verify_twilio
from shared import standard_webhooks, twiml
from shared.contracts import DialBridge, DialEvent, Timestamp
from shared.db import unit_of_work, utcnow
from shared.errors import Forbidden, Unauthorized, Unprocessable
from shared.jsonutil import ORJSONResponse, loads
from shared.outbox import enqueue
from shared.vocabulary import DialLeg, InboundStatus, LegStatus

log = structlog.get_logger("ringback.intake")

router = APIRouter(prefix="/v1/webhooks", tags=["dialing"])

DialId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]{1,64}$")]

# Twilio's call statuses (`CallStatus`, `DialCallStatus`) in the webhook dialer's words;
# `queued`/`initiated` say nothing the console shows.
TWILIO_STATUSES: dict[str, LegStatus] = {
    "ringing": LegStatus.RINGING,
    "in-progress": LegStatus.ANSWERED,
    "answered": LegStatus.ANSWERED,
    "completed": LegStatus.COMPLETED,
    "busy": LegStatus.BUSY,
    "no-answer": LegStatus.NO_ANSWER,
    "failed": LegStatus.FAILED,
    "canceled": LegStatus.CANCELED,
}
# `AnsweredBy` of answering-machine detection: anything but a person is a machine.
_PERSON = frozenset({"human", "unknown"})
# What the agent hears when the customer must not be rung after all.
_NOT_NOW = "This call cannot be made now. Goodbye."
_TROUBLE = "The callback service did not answer. Please try again."


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


def _metrics(request: Request) -> IntakeMetrics:
    metrics: IntakeMetrics = request.app.state.intake_metrics
    return metrics


def _xml(document: bytes) -> Response:
    return Response(document, media_type=twiml.MEDIA_TYPE)


async def _twilio_form(request: Request, what: str) -> dict[str, str]:
    """The verified form of a Twilio request (403 unconfigured, 401 not Twilio's)."""
    settings = _settings(request)
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        _metrics(request).unauthenticated.labels(what).inc()
        raise Forbidden("Twilio webhooks are not enabled: RINGBACK_TWILIO_AUTH_TOKEN.")
    body = await request.body()
    base = (settings.public_base_url or "").rstrip("/")
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        verify_twilio(
            token=token.get_secret_value(),
            url=url,
            body=body,
            content_type=request.headers.get("content-type"),
            signature=request.headers.get("x-twilio-signature", ""),
        )
    except Unauthenticated as exc:
        _metrics(request).unauthenticated.labels(what).inc()
        log.warning("intake.dial.unauthenticated", provider=what, reason=str(exc))
        raise Unauthorized(str(exc)) from None
    # The last value of a repeated name, as Twilio never repeats these.
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _duration(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 7:
        return None
    return int(value)


def _events(
    leg: DialLeg, form: dict[str, str], status_field: str, duration_field: str
) -> list[DialEvent]:
    """What one Twilio request says of a leg, in order: a machine first, then the status."""
    now = utcnow()
    reported: list[LegStatus] = []
    answered_by = form.get("AnsweredBy", "").strip().lower()
    if leg == DialLeg.CUSTOMER and answered_by and answered_by not in _PERSON:
        reported.append(LegStatus.MACHINE)
    status = TWILIO_STATUSES.get(form.get(status_field, "").strip().lower())
    if status is not None:
        reported.append(status)
    call_id = form.get("DialCallSid" if status_field == "DialCallStatus" else "CallSid")
    return [
        DialEvent(
            leg=leg,
            status=each,
            occurred_at=now,
            duration=_duration(form.get(duration_field)),
            call_id=(call_id or None) and call_id[:64],
        )
        for each in reported
    ]


async def _store(request: Request, dial_id: str, events: list[DialEvent]) -> None:
    """The reports, durably, in the dial's order (the relay keeps an ordering key's order)."""
    if not events:
        return
    async with unit_of_work(request.app.state.session_factory) as session:
        for event in events:
            await enqueue(
                session,
                IntakeOutbox,
                destination="callback",
                path=f"/v1/dials/{dial_id}/events",
                payload=event,
                ordering_key=f"dial:{dial_id}",
            )
        await session.commit()
    log.info(
        "intake.dial.reported",
        dial_id=dial_id,
        leg=events[-1].leg,
        statuses=[str(e.status) for e in events],
    )


@router.post(
    "/twilio/dial/{dial_id}",
    summary="Twilio's <Dial action>: how the customer's leg ended (answered with TwiML)",
    response_class=Response,
)
async def twilio_dial_result(dial_id: DialId, request: Request) -> Response:
    form = await _twilio_form(request, "twilio_dial")
    events = _events(DialLeg.CUSTOMER, form, "DialCallStatus", "DialCallDuration")
    await _store(request, dial_id, events)
    return _xml(twiml.hang_up())


@router.post(
    "/twilio/dial/{dial_id}/status",
    summary="Twilio's status callbacks of a dial's legs (`?leg=agent|customer`)",
    response_class=Response,
)
async def twilio_dial_status(
    dial_id: DialId, request: Request, leg: Annotated[DialLeg, Query()]
) -> Response:
    form = await _twilio_form(request, "twilio_dial")
    events = _events(leg, form, "CallStatus", "CallDuration")
    await _store(request, dial_id, events)
    return Response(status_code=204)


@router.post(
    "/twilio/dial/{dial_id}/connect",
    summary="The agent's answer to the whisper: 1 rings the customer (answered with TwiML)",
    response_class=Response,
)
async def twilio_dial_connect(dial_id: DialId, request: Request) -> Response:
    form = await _twilio_form(request, "twilio_dial")
    settings = _settings(request)
    language = settings.dial_whisper_language
    if form.get("Digits", "").strip() != "1":
        return _xml(twiml.say_and_hang_up("Not connected. Goodbye.", language))
    client: httpx.AsyncClient = request.app.state.callback_client
    try:
        answer = await client.post(f"/v1/dials/{dial_id}/connect", timeout=5.0)
    except httpx.HTTPError as exc:
        log.warning("intake.dial.connect_unavailable", dial_id=dial_id, error=type(exc).__name__)
        return _xml(twiml.say_and_hang_up(_TROUBLE, language))
    if answer.status_code != 200:
        log.info("intake.dial.connect_refused", dial_id=dial_id, status=answer.status_code)
        return _xml(twiml.say_and_hang_up(_NOT_NOW, language))
    bridge = DialBridge.model_validate_json(answer.content)
    return _xml(
        twiml.bridge(
            base=settings.public_base_url or "",
            dial_id=dial_id,
            customer_phone=bridge.customer_phone,
            caller_id=bridge.caller_id,
            machine_detection=bridge.machine_detection,
            ring_seconds=bridge.ring_seconds,
        )
    )


class DialerReport(BaseModel):
    """`POST /v1/webhooks/dialer`: a PBX reports one leg of a dial (docs/api.md, dialing)."""

    model_config = ConfigDict(extra="ignore")

    dial_id: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9-]{1,64}$")]
    leg: DialLeg
    status: LegStatus
    duration: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None
    call_id: Annotated[str, Field(max_length=64)] | None = None
    occurred_at: Timestamp | None = None


@router.post(
    "/dialer",
    status_code=202,
    summary="A PBX's report of a dial's leg, signed like `dial.requested`",
)
async def dialer_report(request: Request) -> ORJSONResponse:
    settings = _settings(request)
    secret = settings.dialer_webhook_secret
    if secret is None or not secret.get_secret_value():
        _metrics(request).unauthenticated.labels("dialer").inc()
        raise Forbidden("The webhook dialer is not enabled: RINGBACK_DIALER_WEBHOOK_SECRET.")
    body = await request.body()
    try:
        standard_webhooks.verify(
            secrets=[secret.get_secret_value()],
            headers=request.headers,
            body=body,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    except standard_webhooks.SignatureError as exc:
        _metrics(request).unauthenticated.labels("dialer").inc()
        log.warning("intake.dial.unauthenticated", provider="dialer", reason=str(exc))
        raise Unauthorized(str(exc)) from None
    try:
        report = DialerReport.model_validate(loads(body))
    except (ValueError, ValidationError) as exc:
        errors: list[Any] = (
            [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            if isinstance(exc, ValidationError)
            else [{"loc": ["body"], "msg": "not valid JSON"}]
        )
        raise Unprocessable(
            "The report did not pass validation.", extra={"errors": errors}
        ) from None
    event = DialEvent(
        leg=report.leg,
        status=report.status,
        occurred_at=report.occurred_at or utcnow(),
        duration=report.duration,
        call_id=report.call_id,
    )
    await _store(request, report.dial_id, [event])
    return ORJSONResponse(
        {"dial_id": report.dial_id, "status": InboundStatus.ACCEPTED}, status_code=202
    )
