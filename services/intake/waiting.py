"""The caller still waiting in the phone queue (§11): the offer, forwarded to callback, and
Twilio's `<Enqueue waitUrl>` TwiML that speaks it and takes the "press 1".

A wait request never fails: Twilio tells a caller who gets an error "an application error has
occurred", so anything short of a good offer (callback slow or down, an unknown queue, a
withheld number) is hold music. A "press 1" is stored, as an inbound row and the outbox row
that asks callback for the callback, before the caller hears it is booked.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
import structlog
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from services.intake import queue_requests, repository
from services.intake.metrics import IntakeMetrics
from services.intake.models import IntakeOutbox
from services.intake.service import CALL, RawRequest, inbound_values, sms_allowed
from services.intake.settings import IntakeSettings
from services.intake.telephony.base import Unauthenticated
from services.intake.telephony.twilio import verify as verify_twilio
from shared import twiml_wait
from shared.auth import require_scope
from shared.contracts import QueueOffer
from shared.db import unit_of_work, utcnow
from shared.errors import Forbidden, ServiceUnavailable
from shared.outbox import enqueue
from shared.phone import normalize, region_of
from shared.vocabulary import InboundStatus

log = structlog.get_logger("ringback.intake.waiting")

# Callback's own rule for queue keys (§9): anything else names no queue.
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
DEFAULT_QUEUE = "default"
# A `queued_at` older than this (or in the future) is not believed: the place starts now.
_LONGEST_WAIT = timedelta(hours=24)
# The caller's language, when the wait URL names none: by the country of their number.
_LANGUAGE_OF_REGION: dict[str, twiml_wait.Spoken] = {"FI": "fi", "AX": "sv", "SE": "sv"}
_PROVIDER = "twilio"

QueueKey = Annotated[str, Path(pattern=_KEY.pattern)]

offers = APIRouter(prefix="/v1/queues", tags=["waiting callers"])
twiml = APIRouter(prefix="/v1/twiml", tags=["waiting callers"])


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


# ----------------------------------------------------------------------------- the offer


async def fetch_offer(
    client: httpx.AsyncClient, key: str, *, caller: str | None, limit_seconds: float | None = None
) -> httpx.Response:
    params = {"from": caller} if caller is not None else None
    path = f"/v1/queues/{key}/offer"
    if limit_seconds is None:
        return await client.get(path, params=params)
    return await client.get(path, params=params, timeout=limit_seconds)


@offers.get(
    "/{key}/offer",
    summary="Whether to offer a caller waiting in the phone queue a callback (from callback)",
    dependencies=[Depends(require_scope("intake:write", "callbacks:read"))],
    response_model=QueueOffer,
)
async def forward_offer(
    key: QueueKey,
    request: Request,
    caller: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=64,
            description="The caller's number: a withheld or do-not-call one is never offered.",
        ),
    ] = None,
) -> Response:
    client: httpx.AsyncClient = request.app.state.callback_client
    try:
        upstream = await fetch_offer(client, key, caller=caller)
    except httpx.HTTPError as exc:
        log.warning("intake.offer.unavailable", error=type(exc).__name__)
        raise ServiceUnavailable(
            "The callback service cannot be reached just now; please try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    kept = {n: upstream.headers[n] for n in ("content-type",) if n in upstream.headers}
    return Response(upstream.content, status_code=upstream.status_code, headers=kept)


async def _offer_in_time(request: Request, key: str, caller: str) -> QueueOffer | None:
    """Callback's offer, or None when it is slow (`offer_timeout_seconds`), down or says
    anything but a good answer."""
    client: httpx.AsyncClient = request.app.state.callback_client
    limit = _settings(request).offer_timeout_seconds
    try:
        upstream = await fetch_offer(client, key, caller=caller, limit_seconds=limit)
        if upstream.status_code != 200:
            log.info("intake.offer.refused", queue=key, status=upstream.status_code)
            return None
        return QueueOffer.model_validate_json(upstream.content)
    except (httpx.HTTPError, ValidationError) as exc:
        log.warning("intake.offer.unavailable", queue=key, error=type(exc).__name__)
        return None


# ----------------------------------------------------------------------------- Twilio


async def verified_form(request: Request) -> dict[str, str]:
    """The form of a request Twilio signed; 403 otherwise (and while Twilio is not set up)."""
    settings = _settings(request)
    metrics: IntakeMetrics = request.app.state.intake_metrics
    token = settings.twilio_auth_token
    body = await request.body()
    base = (settings.public_base_url or "").rstrip("/")
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        if token is None or not token.get_secret_value():
            raise Unauthenticated("Twilio webhooks are not enabled: RINGBACK_TWILIO_AUTH_TOKEN.")
        verify_twilio(
            token=token.get_secret_value(),
            url=url,
            body=body,
            content_type=request.headers.get("content-type"),
            signature=request.headers.get("x-twilio-signature", ""),
        )
    except Unauthenticated as exc:
        metrics.unauthenticated.labels("twilio_wait").inc()
        log.warning("intake.wait.unauthenticated", reason=str(exc))
        raise Forbidden(str(exc)) from None
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def queue_key_or_default(queue: str | None) -> str:
    return queue if queue and _KEY.match(queue) else DEFAULT_QUEUE


def caller_language(named: str | None, caller: str | None, region: str) -> twiml_wait.Spoken:
    for language in twiml_wait.VOICES:
        if named == language:
            return language
    phone = normalize(caller, region)
    return _LANGUAGE_OF_REGION.get(region_of(phone) or "", "en") if phone else "en"


def _seconds(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) <= 7 else 0


def _moment(raw: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _xml(document: bytes) -> Response:
    return Response(document, media_type=twiml_wait.MEDIA_TYPE)


Lang = Annotated[str | None, Query(max_length=8)]
QueueParam = Annotated[str | None, Query(max_length=200)]


@twiml.post(
    "/wait",
    summary="Twilio `<Enqueue waitUrl>`: hold music, and the callback offer once it is due",
)
async def wait(request: Request, queue: QueueParam = None, lang: Lang = None) -> Response:
    form = await verified_form(request)
    settings = _settings(request)
    music = settings.twilio_hold_music_url
    key = queue_key_or_default(queue)
    caller = form.get("From", "")
    offered = await _offer_in_time(request, key, caller)
    waited = _seconds(form.get("QueueTime"))
    if offered is None or not offered.offer or waited < offered.min_wait_seconds:
        return _xml(twiml_wait.hold(music))
    now = utcnow()
    language = caller_language(lang, caller, settings.default_region)
    action = twiml_wait.press_url(
        settings.public_base_url or "",
        queue=key,
        queued_at=now - timedelta(seconds=waited),
        language=language,
        estimate=offered.estimated_callback_at,
        tries=0,
    )
    minutes = twiml_wait.minutes_until(offered.estimated_callback_at, now)
    document = twiml_wait.offer(action=action, language=language, minutes=minutes, music_url=music)
    return _xml(document)


@twiml.post(
    "/wait/press",
    summary="The caller's key press on the offer: 1 books the callback and leaves the queue",
)
async def press(
    request: Request,
    queue: QueueParam = None,
    queued_at: Annotated[str | None, Query(max_length=64)] = None,
    lang: Lang = None,
    estimate: Annotated[str | None, Query(max_length=64)] = None,
    tries: Annotated[int, Query(ge=0, le=10)] = 0,
) -> Response:
    form = await verified_form(request)
    settings = _settings(request)
    music = settings.twilio_hold_music_url
    language = caller_language(lang, form.get("From"), settings.default_region)
    now = utcnow()
    promised = _moment(estimate)
    minutes = twiml_wait.minutes_until(promised, now)
    if form.get("Digits", "").strip() != "1":
        if tries >= 1:
            return _xml(twiml_wait.hold(music))
        action = twiml_wait.press_url(
            settings.public_base_url or "",
            queue=queue_key_or_default(queue),
            queued_at=_moment(queued_at) or now,
            language=language,
            estimate=promised,
            tries=tries + 1,
        )
        document = twiml_wait.offer(
            action=action, language=language, minutes=minutes, music_url=music
        )
        return _xml(document)
    entered = _moment(queued_at)
    if entered is None or not now - _LONGEST_WAIT <= entered <= now:
        entered = now
    try:
        stored = await _store_request(
            request,
            form,
            key=queue_key_or_default(queue),
            queued_at=entered,
            language=language,
            promised=promised,
        )
    except Exception:
        # The caller is still on the line and in the queue: tell them, never an error page.
        log.exception("intake.wait.store_failed")
        return _xml(twiml_wait.sorry(language=language, music_url=music))
    if not stored:
        return _xml(twiml_wait.sorry(language=language, music_url=music))
    return _xml(twiml_wait.leave(language=language, minutes=minutes))


async def _store_request(
    request: Request,
    form: dict[str, str],
    *,
    key: str,
    queued_at: datetime,
    language: twiml_wait.Spoken,
    promised: datetime | None,
) -> bool:
    """The request and its forward to callback, in one transaction; False: no number to call.

    The call's leg remembers the request as the call's one callback (`missed_inbound_id`),
    so a hang-up after the press, or `QueueResult=hangup`, is a duplicate, not a missed call.
    """
    settings = _settings(request)
    call_sid = form.get("CallSid", "").strip()[:64]
    phone = normalize(form.get("From"), settings.default_region)
    if not call_sid or phone is None:
        return False
    dialed = normalize(form.get("To"), settings.default_region)
    summary: dict[str, Any] = {"kind": "callback_requested", "queue": key}
    raw = RawRequest.capture(await request.body(), request.headers, request.url.query)
    async with unit_of_work(request.app.state.session_factory) as session:
        leg, _ = await repository.open_leg(session, _PROVIDER, call_sid)
        if leg.missed_inbound_id is not None:
            return True  # pressed twice: one callback
        inbound_id = await repository.insert_inbound(
            session,
            inbound_values(
                raw=raw,
                provider=_PROVIDER,
                kind=CALL,
                status=InboundStatus.ACCEPTED,
                summary=summary,
                external_id=f"{call_sid}:callback_requested",
                phone=phone,
            ),
        )
        if inbound_id is None:
            return True
        leg.missed_inbound_id = inbound_id
        leg.caller = leg.caller or form.get("From", "")[:64] or None
        leg.phone = leg.phone or phone
        leg.queue = leg.queue or key
        leg.updated_at = utcnow()
        event = queue_requests.requested_event(
            inbound_id=inbound_id,
            occurred_at=utcnow(),
            phone=phone,
            provider=_PROVIDER,
            call_id=call_sid,
            queue=key,
            queued_at=queued_at,
            dialed=dialed,
            language=language,
        )
        create = queue_requests.requested_create(
            inbound_id=inbound_id,
            phone=phone,
            queue=key,
            queued_at=queued_at,
            dialed=dialed,
            sms=sms_allowed(settings, phone),
            language=language,
            promised=promised,
        )
        # The timeline entry first: the outbox keeps the order per number.
        for destination, path, payload in (
            ("history", "/v1/events", event),
            ("callback", "/v1/callbacks", create),
        ):
            await enqueue(
                session,
                IntakeOutbox,
                destination=destination,
                path=path,
                payload=payload,
                ordering_key=phone,
            )
    log.info("intake.wait.callback_requested", inbound_id=inbound_id, queue=key)
    return True
