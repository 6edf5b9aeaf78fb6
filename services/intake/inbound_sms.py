"""Inbound SMS (§13): the replies customers send to the survey number, and STOP.

- `POST /v1/webhooks/twilio/sms`: Twilio Messaging's form (`MessageSid`, `From`, `To`, `Body`),
  signed with `X-Twilio-Signature` the way every Twilio webhook is (`telephony.twilio.verify`,
  against `RINGBACK_PUBLIC_BASE_URL` + the path). Answered 200 with an empty `<Response/>`: the
  answer to STOP goes by the ordinary SMS path, from callback, once per number, so it is the
  same for every gateway and counts against the same ceilings.
- `POST /v1/webhooks/sms`: `{"id", "from", "to", "text", "received_at"}` from any other
  gateway, signed the Standard Webhooks way with `RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS`.
  Answered 202 `{"id", "status"}`.

Each message is stored (an `inbound` row of kind `sms`, keyed by the gateway's message id)
with the outbox row that forwards it to callback, in one transaction, before the answer.
Callback matches it to a survey. A bad signature is 403 and is not stored (it is nobody's word).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from services.intake import repository
from services.intake.models import IntakeOutbox
from services.intake.service import RawRequest, inbound_values, record_rejected
from services.intake.settings import IntakeSettings
from services.intake.telephony.base import Unauthenticated
from services.intake.telephony.twilio import TWIML_EMPTY, verify
from shared import standard_webhooks
from shared.contracts import Accepted, InboundSms
from shared.db import commit, unit_of_work, utcnow
from shared.errors import Forbidden, ProblemError
from shared.ids import new_id
from shared.jsonutil import loads
from shared.outbox import enqueue
from shared.phone import normalize
from shared.routing import is_json_media_type
from shared.vocabulary import InboundStatus

log = structlog.get_logger("ringback.intake.sms")

KIND = "sms"
TWILIO = "twilio_sms"
GATEWAY = "sms_gateway"
_FORM = "application/x-www-form-urlencoded"
TEXT_MAX = 1600

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class InboundSmsIn(BaseModel):
    """What an SMS gateway posts to `POST /v1/webhooks/sms` for each message it received."""

    model_config = ConfigDict(extra="ignore", title="InboundSms")

    id: Annotated[str, Field(min_length=1, max_length=200, description="The gateway's message id")]
    sender: Annotated[str, Field(min_length=1, max_length=64, alias="from")]
    to: Annotated[str, Field(max_length=64)] | None = None
    text: Annotated[str, Field(max_length=TEXT_MAX)] = ""
    received_at: AwareDatetime | None = None


class _Unusable(Exception):
    def __init__(self, reason: str, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


def _twilio_message(body: bytes, content_type: str | None) -> InboundSmsIn:
    if (content_type or "").split(";", 1)[0].strip().lower() != _FORM:
        raise _Unusable(f"send the body as {_FORM}", status=415)
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise _Unusable("the body is not valid UTF-8", status=400) from None
    try:
        return InboundSmsIn.model_validate(
            {
                "id": form.get("MessageSid") or form.get("SmsSid") or "",
                "from": form.get("From", ""),
                "to": form.get("To"),
                "text": form.get("Body", ""),
            }
        )
    except ValidationError as exc:
        raise _Unusable(_problems(exc)) from None


def _gateway_message(body: bytes, content_type: str | None) -> InboundSmsIn:
    if not is_json_media_type(content_type):
        raise _Unusable("the body must be application/json", status=415)
    try:
        document = loads(body)
    except ValueError:
        raise _Unusable("the body is not valid JSON", status=400) from None
    try:
        return InboundSmsIn.model_validate(document)
    except ValidationError as exc:
        raise _Unusable(_problems(exc)) from None


def _problems(exc: ValidationError) -> str:
    names = {"sender": "from"}
    return "; ".join(
        f"{'.'.join(names.get(str(p), str(p)) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in exc.errors(include_input=False)[:10]
    )


async def _store(
    session: AsyncSession,
    *,
    provider: str,
    message: InboundSmsIn,
    raw: RawRequest,
    settings: IntakeSettings,
    now: datetime,
) -> Accepted:
    """The inbound row and its forward to callback, in the caller's transaction."""
    inbound_id = new_id()
    phone = normalize(message.sender, settings.default_region)
    inserted = await repository.insert_inbound(
        session,
        inbound_values(
            raw=raw,
            provider=provider,
            kind=KIND,
            status=InboundStatus.ACCEPTED,
            summary={"kind": KIND},
            external_id=message.id,
            phone=phone,
            inbound_id=inbound_id,
        ),
    )
    if inserted is None:
        first = await repository.find_by_external_id(session, provider, message.id)
        return Accepted(id=first or "", status=InboundStatus.DUPLICATE)
    forward = InboundSms(
        id=inbound_id,
        sender=message.sender,
        to=message.to,
        text=message.text,
        received_at=message.received_at or now,
    )
    await enqueue(
        session,
        IntakeOutbox,
        destination="callback",
        path="/v1/inbound-sms",
        payload=forward,
        ordering_key=phone or message.sender,
    )
    return Accepted(id=inbound_id, status=InboundStatus.ACCEPTED)


async def _receive(
    request: Request, *, provider: str, delivery_id: str | None, twilio: bool
) -> Accepted:
    settings = _settings(request)
    body = await request.body()
    raw = RawRequest.capture(body, request.headers, request.url.query)
    async with unit_of_work(request.app.state.session_factory) as session:
        inbound_id = new_id()
        if delivery_id is not None:
            first = await repository.claim_receipt(session, delivery_id, inbound_id)
            if first != inbound_id:
                return Accepted(id=first, status=InboundStatus.DUPLICATE)
        content_type = request.headers.get("content-type")
        try:
            message = (
                _twilio_message(body, content_type)
                if twilio
                else _gateway_message(body, content_type)
            )
        except _Unusable as exc:
            # Kept before answering: the caller's bytes survive even though we say no.
            await record_rejected(
                session=session,
                provider=provider,
                kind=KIND,
                raw=raw,
                reason=exc.reason,
                body_limit=settings.rejected_body_limit_bytes,
                inbound_id=inbound_id,
            )
            await commit(session)
            log.info("intake.sms.rejected", provider=provider, inbound_id=inbound_id)
            raise ProblemError(
                exc.reason[:1000],
                status=exc.status,
                title="Unprocessable Content" if exc.status == 422 else "Bad Request",
                slug="rejected-payload",
                extra={"inbound_id": inbound_id},
            ) from None
        accepted = await _store(
            session, provider=provider, message=message, raw=raw, settings=settings, now=utcnow()
        )
        if delivery_id is not None and accepted.id != inbound_id:
            await repository.point_receipt(session, delivery_id, accepted.id)
    log.info("intake.sms.stored", provider=provider, inbound_id=accepted.id, status=accepted.status)
    return accepted


def _refused(provider: str, reason: str) -> Forbidden:
    # Counted in the log only, never stored: an unauthenticated body is nobody's word.
    log.warning("intake.sms.unauthenticated", provider=provider, reason=reason)
    return Forbidden(reason)


@router.post(
    "/twilio/sms",
    summary="An SMS a customer sent to a Twilio number (Twilio Messaging's signed webhook)",
    responses={200: {"content": {"text/xml": {}}}, 403: {"description": "Bad signature"}},
    response_class=Response,
)
async def twilio_sms(request: Request) -> Response:
    settings = _settings(request)
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        raise Forbidden("Twilio webhooks are not enabled: RINGBACK_TWILIO_AUTH_TOKEN.")
    body = await request.body()
    base = (settings.public_base_url or "").rstrip("/")
    query = request.url.query
    try:
        verify(
            token=token.get_secret_value(),
            url=base + request.url.path + (f"?{query}" if query else ""),
            body=body,
            content_type=request.headers.get("content-type"),
            signature=request.headers.get("x-twilio-signature", ""),
        )
    except Unauthenticated as exc:
        raise _refused(TWILIO, str(exc)) from None
    accepted = await _receive(request, provider=TWILIO, delivery_id=None, twilio=True)
    return Response(
        TWIML_EMPTY,
        status_code=200,
        media_type="text/xml",
        headers={"x-ringback-inbound-id": accepted.id, "x-ringback-status": accepted.status},
    )


_GATEWAY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": InboundSmsIn.model_json_schema()}},
    }
}


@router.post(
    "/sms",
    summary="An SMS a customer sent, from any gateway (signed the Standard Webhooks way)",
    status_code=202,
    response_model=Accepted,
    responses={403: {"description": "Bad signature, or no secret configured"}},
    openapi_extra=_GATEWAY_BODY,
)
async def gateway_sms(request: Request) -> Accepted:
    settings = _settings(request)
    secrets = settings.inbound_sms_secret_list()
    if not secrets:
        raise Forbidden(
            "Inbound SMS webhooks are not enabled: RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS is not set."
        )
    body = await request.body()
    try:
        delivery_id = standard_webhooks.verify(
            secrets=secrets,
            headers=request.headers,
            body=body,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    except standard_webhooks.SignatureError as exc:
        raise _refused(GATEWAY, f"Webhook signature rejected: {exc}.") from None
    return await _receive(request, provider=GATEWAY, delivery_id=delivery_id, twilio=False)
