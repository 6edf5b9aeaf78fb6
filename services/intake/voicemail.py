"""Voicemail (§11): Twilio's `<Record>` TwiML and its three requests, and the rule that turns
the pieces of a voicemail into one timeline entry and one callback.

A voicemail is keyed on its call (Twilio's `CallSid`, the generic webhook's `call_id`) and
gathered on the call's leg: the recording (from the recording status callback, which carries
no number), the caller (from the `<Record action>` or the transcription callback) and the
transcript, in whatever order they come. Once the recording and the caller are known it is
forwarded once: a `voicemail` event to history (the URL, never the audio) and the voicemail to
callback, which calls the customer back as for a missed call, joining the callback the same
call already asked for (same `request_id`) rather than adding a second contact. A transcript
that comes after that follows on its own and updates the same voicemail.
"""

from __future__ import annotations

from typing import Annotated, Any
from xml.etree import ElementTree as ET

import httpx
import structlog
from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from services.intake import repository, service, waiting
from services.intake.metrics import IntakeMetrics
from services.intake.models import CallLeg, IntakeOutbox
from services.intake.service import RawRequest, sms_allowed
from services.intake.settings import IntakeSettings
from services.intake.telephony.base import (
    CallReport,
    NotConfigured,
    PayloadRejected,
    ProviderRequest,
    Unauthenticated,
    VoicemailFacts,
)
from services.intake.telephony.twilio_voicemail import ROUTES, Piece, TwilioVoicemail
from shared import twiml_wait
from shared.contracts import (
    Accepted,
    CallbackCreate,
    Consent,
    CustomerRef,
    EventIn,
    Ref,
    VoicemailIn,
)
from shared.db import commit, unit_of_work
from shared.errors import Forbidden, ProblemError
from shared.ids import new_id
from shared.outbox import enqueue
from shared.phone import normalize
from shared.vocabulary import Channel, Direction, EventType, InboundStatus

log = structlog.get_logger("ringback.intake.voicemail")

VOICEMAIL_ROUTE = "/v1/twiml/voicemail"
# Twilio transcribes recordings of 2-120 s, in English only: longer messages are cut there.
MAX_RECORDING_SECONDS = 120
# Callback has this long to say which language the queue speaks; otherwise no transcription.
QUEUE_TIMEOUT_SECONDS = 1.0

twiml = APIRouter(prefix="/v1/twiml", tags=["voicemails"])
webhooks = APIRouter(prefix="/v1/webhooks", tags=["voicemails"])


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


# ----------------------------------------------------------------------------- the rule


async def apply(
    *,
    session: AsyncSession,
    settings: IntakeSettings,
    inbound_id: str,
    report: CallReport,
    leg: CallLeg | None,
    summary: dict[str, Any],
) -> Accepted:
    """Add one piece of a voicemail to its call's leg; forward the voicemail when it is whole."""
    assert leg is not None, "a voicemail is always interpreted on its call's leg"
    facts = report.voicemail or VoicemailFacts()
    if facts.recording_url is not None and leg.recording_url is None:
        leg.recording_url = facts.recording_url
        leg.recording_sid = facts.recording_sid
        leg.recording_duration = facts.duration
    news = facts.transcript is not None and facts.transcript != leg.transcript
    if facts.transcript is not None:
        leg.transcript = facts.transcript
    phone = normalize(leg.caller, settings.default_region)
    leg.phone = leg.phone or phone
    status = InboundStatus.RECORDED
    if leg.voicemail_inbound_id is None:
        # The generic webhook says all it will in one request: no number means withheld.
        caller_known = leg.caller is not None or facts.whole
        if leg.recording_url is None or not caller_known:
            summary["voicemail"] = "waiting for " + (
                "the recording" if leg.recording_url is None else "the caller's number"
            )
        else:
            status = await _forward(session, settings, inbound_id, report, leg, phone, summary)
    elif news and phone is not None:
        update = VoicemailIn(
            request_id=f"voicemail:{inbound_id}",
            provider=report.provider,
            call_id=report.call_id,
            occurred_at=report.occurred_at,
            phone=phone,
            transcript=leg.transcript,
        )
        await enqueue(
            session,
            IntakeOutbox,
            destination="callback",
            path="/v1/voicemails",
            payload=update,
            ordering_key=phone,
        )
        leg.transcript_forwarded = True
        summary["voicemail"] = "transcript forwarded"
    else:
        summary["voicemail"] = "nothing new"
    await repository.update_inbound(
        session, inbound_id, status=status, phone=phone, summary=summary
    )
    return Accepted(id=inbound_id, status=status)


async def _joined_call(session: AsyncSession, report: CallReport, leg: CallLeg) -> str | None:
    """The inbound record of the call's own callback, if the call already asked for one."""
    if leg.missed_inbound_id is not None:
        return leg.missed_inbound_id
    # The generic webhook's missed calls and requests are stored without a leg (one statement).
    for external_id in (report.call_id, f"{report.call_id}:callback_requested"):
        row = await repository.find_inbound(session, report.provider, external_id[:200])
        if row is not None and row.status == InboundStatus.ACCEPTED:
            return row.id
    return None


async def _forward(
    session: AsyncSession,
    settings: IntakeSettings,
    inbound_id: str,
    report: CallReport,
    leg: CallLeg,
    phone: str | None,
    summary: dict[str, Any],
) -> InboundStatus:
    joined = await _joined_call(session, report, leg)
    # From now on a missed-call report of this call is a duplicate: the voicemail is its record.
    leg.missed_inbound_id = leg.missed_inbound_id or joined or inbound_id
    leg.voicemail_inbound_id = inbound_id
    leg.transcript_forwarded = leg.transcript is not None
    dialed = normalize(leg.callee, settings.default_region)
    queue = report.queue or leg.queue
    if joined is not None:
        summary["joins"] = joined
    if queue:
        summary["queue"] = queue
    ordering_key = phone or f"inbound:{inbound_id}"
    event = _event(report, leg, inbound_id, phone, queue, dialed)
    await enqueue(
        session,
        IntakeOutbox,
        destination="history",
        path="/v1/events",
        payload=event,
        ordering_key=ordering_key,
    )
    if phone is None:
        summary["voicemail"] = "recorded: withheld number"
        return InboundStatus.RECORDED
    create = CallbackCreate(
        request_id=f"inbound:{joined or inbound_id}",
        source="missed_call",
        channel=Channel.PHONE,
        first_contact_at=report.occurred_at,
        phone=phone,
        message=leg.transcript,
        queue=queue,
        dialed=dialed,
        inbound_id=joined or inbound_id,
        consent=Consent(sms=sms_allowed(settings, phone), email=True),
    )
    voicemail = VoicemailIn(
        request_id=f"voicemail:{inbound_id}",
        provider=report.provider,
        call_id=report.call_id,
        occurred_at=report.occurred_at,
        phone=phone,
        recording_url=leg.recording_url,
        recording_sid=leg.recording_sid,
        duration=leg.recording_duration,
        transcript=leg.transcript,
        callback=create,
    )
    await enqueue(
        session,
        IntakeOutbox,
        destination="callback",
        path="/v1/voicemails",
        payload=voicemail,
        ordering_key=ordering_key,
    )
    summary["voicemail"] = "forwarded"
    return InboundStatus.ACCEPTED


def _event(
    report: CallReport,
    leg: CallLeg,
    inbound_id: str,
    phone: str | None,
    queue: str | None,
    dialed: str | None,
) -> EventIn:
    data: dict[str, Any] = {
        "provider": report.provider,
        "call_id": report.call_id,
        "recording_url": leg.recording_url,
    }
    optional = {
        "duration": leg.recording_duration,
        "transcript": leg.transcript,
        "queue": queue,
        "dialed": dialed,
        "caller_withheld": True if phone is None else None,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    seconds = f" ({leg.recording_duration} s)" if leg.recording_duration is not None else ""
    return EventIn(
        id=new_id(),
        occurred_at=report.occurred_at,
        channel=Channel.PHONE,
        direction=Direction.INBOUND,
        type=EventType.VOICEMAIL,
        customer=CustomerRef(phone=phone),
        subject=Ref(kind="inbound", id=inbound_id),
        actor=Ref(kind="customer"),
        summary=f"Voicemail{seconds}",
        data=data,
    )


# ----------------------------------------------------------------------------- Twilio

_PIECES: dict[Piece, TwilioVoicemail] = {piece: TwilioVoicemail(piece) for piece in ROUTES}


def _empty_twiml() -> Response:
    return Response(
        b'<?xml version="1.0" encoding="UTF-8"?><Response/>', media_type=twiml_wait.MEDIA_TYPE
    )


async def _receive(request: Request, piece: Piece) -> Response:
    """Verify (403 otherwise), store, and answer as Twilio expects: TwiML on the action."""
    provider = _PIECES[piece]
    settings = _settings(request)
    metrics: IntakeMetrics = request.app.state.intake_metrics
    body = await request.body()
    incoming = ProviderRequest(
        body=body,
        content_type=request.headers.get("content-type"),
        headers=request.headers,
        path=request.url.path,
        query=request.url.query,
    )
    try:
        provider.authenticate(settings, incoming)
    except (NotConfigured, Unauthenticated) as exc:
        metrics.unauthenticated.labels(f"twilio_{piece}").inc()
        log.warning("intake.voicemail.unauthenticated", piece=piece, reason=str(exc))
        raise Forbidden(str(exc)) from None
    raw = RawRequest.capture(body, request.headers, request.url.query)
    inbound_id = new_id()
    async with unit_of_work(request.app.state.session_factory) as session:
        try:
            delivery = provider.parse(incoming)
        except PayloadRejected as exc:
            await service.record_rejected(
                session=session,
                provider=provider.name,
                kind=service.CALL,
                raw=raw,
                reason=exc.reason,
                body_limit=settings.rejected_body_limit_bytes,
                inbound_id=inbound_id,
            )
            await commit(session)
            log.info("intake.voicemail.rejected", piece=piece, inbound_id=inbound_id)
            if piece == "record-action":
                return _empty_twiml()
            raise _problem(exc, inbound_id) from None
        accepted = await service.record_delivery(
            session=session,
            settings=settings,
            provider=provider,
            delivery=delivery,
            raw=raw,
            inbound_id=inbound_id,
        )
    metrics.inbound.labels(provider.name, accepted.status).inc()
    log.info("intake.voicemail.stored", piece=piece, inbound_id=accepted.id, status=accepted.status)
    if piece == "record-action":
        # The caller has said their message: the call ends here.
        return _empty_twiml()
    return Response(
        accepted.model_dump_json(exclude_none=True).encode(),
        status_code=202,
        media_type="application/json",
    )


def _problem(exc: PayloadRejected, inbound_id: str) -> Exception:
    return ProblemError(
        exc.reason[:1000],
        status=exc.status,
        title="Unprocessable Content" if exc.status == 422 else "Bad Request",
        slug="rejected-payload",
        extra={"inbound_id": inbound_id},
    )


@webhooks.post(
    ROUTES["record-action"],
    summary="Twilio `<Record action>`: the caller's number for their voicemail; ends the call",
)
async def record_action(request: Request) -> Response:
    return await _receive(request, "record-action")


@webhooks.post(
    ROUTES["recording"],
    status_code=202,
    summary="Twilio `recordingStatusCallback`: the voicemail's recording is available",
)
async def recording(request: Request) -> Response:
    return await _receive(request, "recording")


@webhooks.post(
    ROUTES["transcription"],
    status_code=202,
    summary="Twilio `transcribeCallback`: the voicemail's transcript",
)
async def transcription(request: Request) -> Response:
    return await _receive(request, "transcription")


async def _queue_speaks_english(request: Request, key: str) -> bool:
    """Whether the queue's language is English; False when callback cannot say within 1 s."""
    client: httpx.AsyncClient = request.app.state.callback_client
    try:
        answer = await client.get(f"/v1/queues/{key}", timeout=QUEUE_TIMEOUT_SECONDS)
        if answer.status_code != 200:
            return False
        languages = answer.json().get("languages") or []
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        log.warning("intake.voicemail.queue_unavailable", error=type(exc).__name__)
        return False
    return isinstance(languages, list) and bool(languages) and languages[0] == "en"


QueueParam = Annotated[str | None, Query(max_length=200)]
Lang = Annotated[str | None, Query(max_length=8)]


@twiml.post(
    "/voicemail",
    summary="Twilio: ask the caller to leave a message and record it (`<Record>`)",
)
async def voicemail_twiml(
    request: Request, queue: QueueParam = None, lang: Lang = None
) -> Response:
    form = await waiting.verified_form(request)
    settings = _settings(request)
    key = waiting.queue_key_or_default(queue)
    language = waiting.caller_language(lang, form.get("From"), settings.default_region)
    transcribe = await _queue_speaks_english(request, key)
    base = (settings.public_base_url or "").rstrip("/")
    query = f"?queue={key}"
    root = ET.Element("Response")
    twiml_wait.say_into(root, language, twiml_wait.spoken(language, "voicemail"))
    attributes = {
        "action": f"{base}/v1/webhooks{ROUTES['record-action']}{query}",
        "method": "POST",
        "maxLength": str(MAX_RECORDING_SECONDS),
        "playBeep": "true",
        "recordingStatusCallback": f"{base}/v1/webhooks{ROUTES['recording']}{query}",
        "recordingStatusCallbackMethod": "POST",
        "recordingStatusCallbackEvent": "completed absent",
    }
    if transcribe:
        attributes["transcribe"] = "true"
        attributes["transcribeCallback"] = f"{base}/v1/webhooks{ROUTES['transcription']}{query}"
    ET.SubElement(root, "Record", attributes)
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return Response(document, media_type=twiml_wait.MEDIA_TYPE)
