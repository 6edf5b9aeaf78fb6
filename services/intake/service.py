"""Intake's rules: keep everything a caller sent, decide what it means, queue the forwards."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import phonenumbers
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.intake import queue_requests, repository
from services.intake.models import CallLeg, Inbound, IntakeOutbox
from services.intake.schemas import (
    ContactRequestIn,
    ErasureCounts,
    ErasureResult,
    InboundDetail,
    InboundItem,
    ReplayResult,
)
from services.intake.settings import IntakeSettings
from services.intake.telephony import REGISTRY
from services.intake.telephony.base import (
    CallReport,
    Decision,
    Delivery,
    PayloadRejected,
    Provider,
    ProviderRequest,
)
from shared.apikeys import Principal
from shared.contracts import (
    Accepted,
    Acknowledgement,
    AnsweredCall,
    CallbackCreate,
    Consent,
    CustomerRef,
    ErasureRequest,
    EventIn,
    PreferredTime,
    Ref,
)
from shared.db import utcnow
from shared.errors import Conflict, NotFound, Unprocessable
from shared.ids import new_id
from shared.outbox import enqueue, row_values
from shared.phone import normalize, region_of
from shared.ratelimit import Limit, RateLimiter
from shared.vocabulary import Channel, Direction, EventType, InboundStatus

# What an inbound row is (`kind`), and the `provider` of requests made to our own API.
CALL = "call"
CONTACT_REQUEST = "contact_request"
API = "api"

# Request headers worth keeping with a raw record; never credentials or signatures.
_KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "x-request-id",
    "x-forwarded-for",
    "idempotency-key",
)


@dataclass(frozen=True, slots=True)
class RawRequest:
    """The bytes and headers as they arrived, before anything was parsed."""

    body: bytes
    content_type: str | None
    headers: dict[str, str]
    query: str | None = None

    @classmethod
    def capture(cls, body: bytes, headers: Any, query: str | None = None) -> RawRequest:
        kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
        return cls(
            body=body, content_type=headers.get("content-type"), headers=kept, query=query or None
        )


class Rejected(Exception):
    """An authentic payload was kept as `inbound_id` but cannot be used."""

    def __init__(self, inbound_id: str, error: PayloadRejected) -> None:
        super().__init__(error.reason)
        self.inbound_id = inbound_id
        self.error = error


def sms_allowed(settings: IntakeSettings, phone: str) -> bool:
    """Whether we may text this number (destination allow-list against SMS pumping)."""
    return (region_of(phone) or "") in settings.sms_allowed_regions


def inbound_values(
    *,
    raw: RawRequest,
    provider: str,
    kind: str,
    status: InboundStatus,
    summary: dict[str, Any],
    external_id: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    reason: str | None = None,
    body_limit: int | None = None,
    inbound_id: str | None = None,
) -> dict[str, Any]:
    """Every column of a new inbound row, whichever path stores it: fast, general, rejected."""
    body = raw.body if body_limit is None else raw.body[:body_limit]
    return {
        "id": inbound_id or new_id(),
        "provider": provider,
        "kind": kind,
        "external_id": external_id,
        "status": status,
        "reason": reason,
        "received_at": utcnow(),
        "content_type": raw.content_type,
        "headers": raw.headers,
        "body": body,
        "body_truncated": len(body) < len(raw.body),
        "phone": phone,
        "email": email,
        "query": raw.query,
        "summary": summary,
    }


class _Legs:
    """`LegStore` for one provider, in the request's transaction."""

    def __init__(self, session: AsyncSession, provider: str) -> None:
        self.session = session
        self.provider = provider
        self.opened: list[CallLeg] = []

    async def open(self, call_id: str) -> tuple[CallLeg, bool]:
        leg, created = await repository.open_leg(self.session, self.provider, call_id)
        self.opened.append(leg)
        return leg, created


class _NoLegs:
    """The `LegStore` a stateless provider gets: it has promised never to open one."""

    async def open(self, call_id: str) -> tuple[CallLeg, bool]:
        raise RuntimeError("a provider marked stateless opened a call leg")


# --- webhooks ---------------------------------------------------------------------------


async def ingest_stateless(
    *,
    engine: AsyncEngine,
    settings: IntakeSettings,
    provider: Provider[Any],
    request: ProviderRequest,
    raw: RawRequest,
    delivery_id: str | None,
) -> Accepted | None:
    """`ingest` for a stateless provider, in one statement; None: call `ingest` instead.

    Parsing and interpreting need no database here, so everything is decided first and the
    receipt, the inbound row and its forwards are written in one statement, as `ingest`
    would write them (tests/intake/test_two_paths.py compares the rows). Left to `ingest`:
    an unusable payload (it claims the receipt before keeping the payload as rejected, so a
    replay of it is still a duplicate), and the rare race with a concurrent delivery of the
    same webhook-id or call (`store_call`).
    """
    try:
        delivery = provider.parse(request)
    except PayloadRejected:
        return None
    if provider.needs_legs(delivery):
        return None
    decision = await provider.interpret(delivery, _NoLegs())
    inbound_id = new_id()
    summary = _noted(decision, dict(delivery.summary))
    report = decision.report
    if report is None:
        outcome = CallOutcome(status=InboundStatus.RECORDED, summary=summary, ordering_key="")
    else:
        summary["outcome"] = report.outcome
        outcome = call_outcome(
            settings=settings, report=report, inbound_id=inbound_id, summary=summary
        )
    inbound = inbound_values(
        raw=raw,
        provider=provider.name,
        kind=CALL,
        status=outcome.status,
        summary=outcome.summary,
        external_id=delivery.external_id,
        phone=outcome.phone,
        email=outcome.email,
        inbound_id=inbound_id,
    )
    forwards = [
        row_values(
            destination=forward.destination,
            path=forward.path,
            payload=forward.payload,
            ordering_key=outcome.ordering_key,
            now=inbound["received_at"],
        )
        for forward in outcome.forwards
    ]
    call = repository.NewCall(delivery_id=delivery_id, inbound=inbound, forwards=forwards)
    stored = await repository.store_call(engine, call)
    if stored is None:
        return None
    stored_id, new = stored
    return Accepted(id=stored_id, status=outcome.status if new else InboundStatus.DUPLICATE)


async def ingest(
    *,
    session: AsyncSession,
    settings: IntakeSettings,
    provider: Provider[Any],
    request: ProviderRequest,
    raw: RawRequest,
    delivery_id: str | None,
) -> Accepted:
    """Store one authenticated webhook and what it means; raise `Rejected` if unusable."""
    inbound_id = new_id()
    if delivery_id is not None:
        first = await repository.claim_receipt(session, delivery_id, inbound_id)
        if first != inbound_id:
            # A replayed message id: the sender's retry, or someone else's replay.
            return Accepted(id=first, status=InboundStatus.DUPLICATE)
    try:
        delivery = provider.parse(request)
    except PayloadRejected as exc:
        await record_rejected(
            session=session,
            provider=provider.name,
            kind=CALL,
            raw=raw,
            reason=exc.reason,
            body_limit=settings.rejected_body_limit_bytes,
            inbound_id=inbound_id,
        )
        raise Rejected(inbound_id, exc) from None
    accepted = await record_delivery(
        session=session,
        settings=settings,
        provider=provider,
        delivery=delivery,
        raw=raw,
        inbound_id=inbound_id,
    )
    if delivery_id is not None and accepted.id != inbound_id:
        await repository.point_receipt(session, delivery_id, accepted.id)
    return accepted


async def record_delivery(
    *,
    session: AsyncSession,
    settings: IntakeSettings,
    provider: Provider[Any],
    delivery: Delivery[Any],
    raw: RawRequest,
    inbound_id: str,
) -> Accepted:
    """Store a parsed delivery (a redelivery is a duplicate), interpret it, queue forwards."""
    inserted = await repository.insert_inbound(
        session,
        inbound_values(
            raw=raw,
            provider=provider.name,
            kind=CALL,
            status=InboundStatus.RECORDED,
            summary=dict(delivery.summary),
            external_id=delivery.external_id,
            inbound_id=inbound_id,
        ),
    )
    if inserted is None:
        existing = await repository.find_by_external_id(
            session, provider.name, delivery.external_id
        )
        return Accepted(id=existing or "", status=InboundStatus.DUPLICATE)
    legs = _Legs(session, provider.name)
    decision = await provider.interpret(delivery, legs)
    now = utcnow()
    for leg in legs.opened:
        leg.updated_at = now
        if leg.phone is None and leg.caller:
            leg.phone = normalize(leg.caller, settings.default_region)
    return await _apply(
        session=session,
        settings=settings,
        inbound_id=inbound_id,
        decision=decision,
        summary=dict(delivery.summary),
    )


async def _apply(
    *,
    session: AsyncSession,
    settings: IntakeSettings,
    inbound_id: str,
    decision: Decision,
    summary: dict[str, Any],
) -> Accepted:
    report = decision.report
    summary = _noted(decision, summary)
    if report is None:
        await repository.update_inbound(session, inbound_id, summary=summary)
        return Accepted(id=inbound_id, status=InboundStatus.RECORDED)
    summary["outcome"] = report.outcome
    leg = decision.leg
    if report.outcome == "voicemail":
        # Not the call's outcome but its voicemail, gathered on the call's leg.
        # Imported here: the voicemail rule builds on this module (a cycle at import time).
        from services.intake.voicemail import apply as apply_voicemail

        return await apply_voicemail(
            session=session,
            settings=settings,
            inbound_id=inbound_id,
            report=report,
            leg=leg,
            summary=summary,
        )
    if leg is not None:
        # Each outcome of a call is reported once, whichever of its requests says so first.
        first = leg.missed_inbound_id if report.outcome == "missed" else leg.answered_inbound_id
        if first is not None:
            summary["duplicate_of"] = first
            await repository.update_inbound(
                session, inbound_id, status=InboundStatus.DUPLICATE, summary=summary
            )
            return Accepted(id=first, status=InboundStatus.DUPLICATE)
        if report.outcome == "missed":
            leg.missed_inbound_id = inbound_id
        else:
            leg.answered_inbound_id = inbound_id
    outcome = call_outcome(settings=settings, report=report, inbound_id=inbound_id, summary=summary)
    for forward in outcome.forwards:
        await enqueue(
            session,
            IntakeOutbox,
            destination=forward.destination,
            path=forward.path,
            payload=forward.payload,
            ordering_key=outcome.ordering_key,
        )
    await repository.update_inbound(
        session,
        inbound_id,
        status=outcome.status,
        phone=outcome.phone,
        email=outcome.email,
        summary=outcome.summary,
    )
    return Accepted(id=inbound_id, status=outcome.status)


def _noted(decision: Decision, summary: dict[str, Any]) -> dict[str, Any]:
    if decision.notes:
        summary["notes"] = {k: str(v) for k, v in decision.notes.items()}
    return summary


@dataclass(frozen=True, slots=True)
class Forward:
    destination: str
    path: str
    payload: BaseModel


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a call makes of its inbound row, and the outbox rows that forward it."""

    status: InboundStatus
    summary: dict[str, Any]
    ordering_key: str
    phone: str | None = None
    email: str | None = None
    forwards: tuple[Forward, ...] = ()


def call_outcome(
    *, settings: IntakeSettings, report: CallReport, inbound_id: str, summary: dict[str, Any]
) -> CallOutcome:
    """The forwards of a missed or answered call, and the inbound row they leave behind."""
    phone = normalize(report.caller, settings.default_region)
    # The same rule as the caller's; a `to` that is no number is forwarded as no number
    # (the raw value stays in the stored body), never a reason to refuse the call.
    dialed = normalize(report.callee, settings.default_region)
    # Kept with the record as forwarded, so an operator sees where the call was routed.
    if report.queue:
        summary["queue"] = report.queue
    if dialed:
        summary["dialed"] = dialed
    if report.outcome == "requested":
        return _requested(settings, report, inbound_id, summary, phone, dialed)
    history = Forward("history", "/v1/events", _call_event(report, inbound_id, phone, dialed))
    ordering_key = phone or f"inbound:{inbound_id}"
    if phone is None:
        return CallOutcome(
            InboundStatus.RECORDED, summary, ordering_key, email=report.email, forwards=(history,)
        )
    if not sms_allowed(settings, phone):
        summary["sms_blocked"] = "region"
    if report.outcome == "answered":
        # The customer got through: callback completes their open callback, if any.
        answered = AnsweredCall(
            request_id=f"inbound:{inbound_id}",
            phone=phone,
            occurred_at=report.occurred_at,
            inbound_id=inbound_id,
            # It completes only the open callbacks of its own queue.
            queue=report.queue,
            dialed=dialed,
        )
        forward = Forward("callback", "/v1/answered-calls", answered)
        return CallOutcome(
            InboundStatus.RECORDED, summary, ordering_key, phone, report.email, (history, forward)
        )
    create = CallbackCreate(
        request_id=f"inbound:{inbound_id}",
        source="missed_call",
        channel=Channel.PHONE,
        first_contact_at=report.occurred_at,
        phone=phone,
        email=report.email,
        name=report.name,
        language=report.language,
        queue=report.queue,
        dialed=dialed,
        inbound_id=inbound_id,
        # Outside the allow-list the callback still happens, but nothing texts the number.
        consent=Consent(sms=sms_allowed(settings, phone), email=True),
    )
    forward = Forward("callback", "/v1/callbacks", create)
    return CallOutcome(
        InboundStatus.ACCEPTED, summary, ordering_key, phone, report.email, (history, forward)
    )


def _requested(
    settings: IntakeSettings,
    report: CallReport,
    inbound_id: str,
    summary: dict[str, Any],
    phone: str | None,
    dialed: str | None,
) -> CallOutcome:
    """A callback asked for in the phone queue (§11): the place kept from `queued_at`."""
    queued_at = report.queued_at or report.occurred_at
    requested = queue_requests.requested_event(
        inbound_id=inbound_id,
        occurred_at=report.occurred_at,
        phone=phone,
        provider=report.provider,
        call_id=report.call_id,
        queue=report.queue,
        queued_at=queued_at,
        dialed=dialed,
        language=report.language,
    )
    history = Forward("history", "/v1/events", requested)
    if phone is None:
        # Nobody to call back: the request is on the timeline, and that is all.
        return CallOutcome(
            InboundStatus.RECORDED,
            summary,
            f"inbound:{inbound_id}",
            email=report.email,
            forwards=(history,),
        )
    if not sms_allowed(settings, phone):
        summary["sms_blocked"] = "region"
    create = queue_requests.requested_create(
        inbound_id=inbound_id,
        phone=phone,
        queue=report.queue,
        queued_at=queued_at,
        dialed=dialed,
        sms=sms_allowed(settings, phone),
        language=report.language,
        email=report.email,
        name=report.name,
    )
    forward = Forward("callback", "/v1/callbacks", create)
    return CallOutcome(
        InboundStatus.ACCEPTED, summary, phone, phone, report.email, (history, forward)
    )


async def record_rejected(
    *,
    session: AsyncSession,
    provider: str,
    kind: str,
    raw: RawRequest,
    reason: str,
    body_limit: int,
    inbound_id: str | None = None,
) -> str:
    """Keep an authentic but unusable payload, bounded in size, for an operator to inspect."""
    values = inbound_values(
        raw=raw,
        provider=provider,
        kind=kind,
        status=InboundStatus.REJECTED,
        summary={},
        reason=reason[:2000],
        body_limit=body_limit,
        inbound_id=inbound_id,
    )
    stored = await repository.insert_inbound(session, values)
    assert stored is not None
    return stored


def _call_event(
    report: CallReport, inbound_id: str, phone: str | None, dialed: str | None
) -> EventIn:
    missed = report.outcome == "missed"
    if phone is None:
        summary = "Missed call from a withheld number" if missed else "Call answered (withheld)"
    else:
        summary = "Missed call" if missed else "Call answered"
    data: dict[str, Any] = {"provider": report.provider, "call_id": report.call_id}
    data["status"] = report.status
    if report.queue:
        data["queue"] = report.queue
    if dialed:
        data["dialed"] = dialed
    if phone is None:
        data["caller_withheld"] = True
    return EventIn(
        id=new_id(),
        occurred_at=report.occurred_at,
        channel=Channel.PHONE,
        direction=Direction.INBOUND,
        type=EventType.MISSED_CALL if missed else EventType.CALL_ANSWERED,
        customer=CustomerRef(phone=phone, email=report.email, name=report.name),
        subject=Ref(kind="inbound", id=inbound_id),
        actor=Ref(kind="customer"),
        summary=summary,
        data=data,
    )


# --- operators --------------------------------------------------------------------------


def inbound_item(row: Inbound) -> InboundItem:
    return InboundItem(
        id=row.id,
        provider=row.provider,
        kind=row.kind,
        status=row.status,
        reason=row.reason,
        received_at=row.received_at,
        content_type=row.content_type,
        body_bytes=len(row.body),
        body_truncated=row.body_truncated,
        summary=row.summary,
    )


def inbound_detail(row: Inbound) -> InboundDetail:
    try:
        text: str | None = row.body.decode("utf-8")
        encoded = None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(row.body).decode()
    return InboundDetail(
        **inbound_item(row).model_dump(),
        external_id=row.external_id,
        phone=row.phone,
        email=row.email,
        headers=row.headers,
        query=row.query,
        body=text,
        body_base64=encoded,
        erased_at=row.erased_at,
    )


async def replay(
    *, session: AsyncSession, settings: IntakeSettings, inbound_id: str
) -> ReplayResult:
    """Parse a rejected record again with today's code; record it like a fresh delivery."""
    row = await repository.get_inbound(session, inbound_id, lock=True)
    if row is None:
        raise NotFound("No inbound record has this id.")
    if row.status != InboundStatus.REJECTED:
        raise Conflict(f"Only rejected records can be replayed; this one is {row.status}.")
    provider = REGISTRY.get(row.provider)
    if provider is None:
        raise Conflict(f"No adapter handles provider {row.provider!r} any more.")
    if row.body_truncated:
        raise Unprocessable("The stored body was truncated when it was kept; it cannot be parsed.")
    request = ProviderRequest(
        body=row.body,
        content_type=row.content_type,
        headers={k.lower(): str(v) for k, v in row.headers.items()},
        query=row.query or "",
    )
    try:
        delivery = provider.parse(request)
    except PayloadRejected as exc:
        raise Unprocessable(
            f"It still does not parse: {exc.reason}"[:1000], extra={"inbound_id": row.id}
        ) from None
    raw = RawRequest(
        body=row.body, content_type=row.content_type, headers=dict(row.headers), query=row.query
    )
    accepted = await record_delivery(
        session=session,
        settings=settings,
        provider=provider,
        delivery=delivery,
        raw=raw,
        inbound_id=new_id(),
    )
    row.status = InboundStatus.REPLAYED
    row.summary = {**row.summary, "replayed_as": accepted.id, "replayed_at": utcnow().isoformat()}
    return ReplayResult(id=row.id, status=InboundStatus.REPLAYED, result=accepted)


# --- contact requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactOutcome:
    accepted: Accepted
    repeated: bool


async def contact_request(
    *,
    session: AsyncSession,
    settings: IntakeSettings,
    limiter: RateLimiter,
    data: ContactRequestIn,
    raw: RawRequest,
    principal: Principal,
    client_ip: str | None,
    idempotency_key: str | None,
) -> ContactOutcome:
    """Store a contact request with its forwards, once per Idempotency-Key."""
    phone: str | None = None
    if data.phone is not None:
        phone = normalize(data.phone, settings.default_region)
        if phone is None:
            raise Unprocessable(
                "The phone number is not one we can call.",
                extra={"errors": [{"loc": ["body", "phone"], "msg": "not a valid phone number"}]},
            )
    email = data.email.lower() if data.email else None
    if phone is None and email is None:
        raise Unprocessable(
            "Give a phone number (for a callback) or an email address.",
            extra={"errors": [{"loc": ["body"], "msg": "phone or email is required"}]},
        )
    fingerprint = hashlib.sha256(raw.body).hexdigest()
    external_id = f"{principal.key_id}:{idempotency_key}"[:200] if idempotency_key else None
    if external_id is not None:
        earlier = await repository.find_inbound(session, API, external_id)
        if earlier is not None:
            return _repeat(earlier, fingerprint)

    limits = [Limit("api_key", principal.key_id, settings.rate_limit_per_api_key)]
    if client_ip:
        limits.append(Limit("ip", client_ip, settings.rate_limit_per_ip))
    if phone:
        limits.append(Limit("phone", phone, settings.rate_limit_per_phone))
    await limiter.hit(limits)

    can_text = phone is not None and sms_allowed(settings, phone)
    wants_callback = phone is not None
    summary: dict[str, Any] = {"channel": data.channel, "body_sha256": fingerprint}
    if data.queue:
        summary["queue"] = data.queue
    if phone is not None and not can_text:
        summary["sms_blocked"] = "region"
    status = InboundStatus.ACCEPTED if wants_callback else InboundStatus.RECORDED
    inbound_id = await repository.insert_inbound(
        session,
        inbound_values(
            raw=raw,
            provider=API,
            kind=CONTACT_REQUEST,
            status=status,
            summary=summary,
            external_id=external_id,
            phone=phone,
            email=email,
        ),
    )
    if inbound_id is None:
        # The same key at the same moment: the other request won; answer its result.
        assert external_id is not None
        earlier = await repository.find_inbound(session, API, external_id)
        assert earlier is not None
        return _repeat(earlier, fingerprint)

    received_at = utcnow()
    ordering_key = phone or email or f"inbound:{inbound_id}"
    event = EventIn(
        id=new_id(),
        occurred_at=received_at,
        channel=data.channel,
        direction=Direction.INBOUND,
        type=EventType.CONTACT_REQUEST,
        customer=CustomerRef(phone=phone, email=email, name=data.name, language=data.language),
        subject=Ref(kind="inbound", id=inbound_id),
        actor=Ref(kind="customer"),
        summary=f"Contact request ({data.channel})",
        data={
            k: v
            for k, v in {
                "message": data.message,
                "preferred": data.preferred.model_dump(mode="json", exclude_none=True),
                "sms_blocked": summary.get("sms_blocked"),
                "queue": data.queue,
            }.items()
            if v is not None
        },
    )
    await enqueue(
        session,
        IntakeOutbox,
        destination="history",
        path="/v1/events",
        payload=event,
        ordering_key=ordering_key,
    )
    if phone is not None:
        create = CallbackCreate(
            request_id=f"inbound:{inbound_id}",
            source="contact_request",
            channel=data.channel,
            first_contact_at=received_at,
            phone=phone,
            email=email,
            name=data.name,
            language=data.language,
            message=data.message,
            preferred=PreferredTime(**data.preferred.model_dump()),
            consent=Consent(sms=data.consent.sms and can_text, email=data.consent.email),
            queue=data.queue,
            inbound_id=inbound_id,
        )
        await enqueue(
            session,
            IntakeOutbox,
            destination="callback",
            path="/v1/callbacks",
            payload=create,
            ordering_key=ordering_key,
        )
    elif email is not None and data.consent.email:
        ack = Acknowledgement(
            request_id=f"inbound:{inbound_id}",
            email=email,
            name=data.name,
            language=data.language,
            channel=data.channel,
            received_at=received_at,
        )
        await enqueue(
            session,
            IntakeOutbox,
            destination="callback",
            path="/v1/acknowledgements",
            payload=ack,
            ordering_key=ordering_key,
        )
    return ContactOutcome(Accepted(id=inbound_id, status=status), repeated=False)


def _repeat(earlier: Inbound, fingerprint: str) -> ContactOutcome:
    stored = earlier.summary.get("body_sha256")
    if stored is not None and stored != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was used with a different request body.",
            slug="idempotency-key-reused",
        )
    status = (
        InboundStatus(earlier.status)
        if earlier.status in {InboundStatus.ACCEPTED, InboundStatus.RECORDED}
        else InboundStatus.RECORDED
    )
    return ContactOutcome(Accepted(id=earlier.id, status=status), repeated=True)


# --- erasure ----------------------------------------------------------------------------

# Between two digits of a number people and systems write spaces, dots, slashes, dashes,
# brackets, or their URL encodings (`+`, `%20`, `%2F`, ...).
_SEPARATOR = r"(?:[ ./()+-]|%2[0-9a-f]){0,3}"


def phone_pattern(national: str) -> str:
    """A PostgreSQL regular expression for the national digits in any common notation."""
    return _SEPARATOR.join(national) + "(?![0-9])"


async def erase(
    *, session: AsyncSession, settings: IntakeSettings, request: ErasureRequest
) -> ErasureResult:
    """Remove these people's personal data from the intake schema; idempotent on the id."""
    if not await repository.claim_erasure(session, request.id, request.requested_at):
        done = await repository.get_erasure(session, request.id)
        assert done is not None
        return ErasureResult(
            id=done.id, erased=ErasureCounts(**done.counts), completed_at=done.completed_at
        )
    phones: set[str] = set()
    patterns: set[str] = set()
    for given in request.phones:
        phone = normalize(given, settings.default_region)
        if phone is None:
            continue
        phones.add(phone)
        national = phonenumbers.national_significant_number(phonenumbers.parse(phone, None))
        # Raw bodies hold the number in whatever notation the sender used.
        if len(national) >= 6:
            patterns.add(phone_pattern(national))
    emails = {email.lower() for email in request.emails}
    email_forms = emails | {quote(email, safe="").lower() for email in emails}
    counts = {
        "inbound": await repository.erase_inbound(
            session,
            phones=sorted(phones),
            phone_patterns=sorted(patterns),
            emails=sorted(emails),
            email_forms=sorted(email_forms),
        ),
        "call_legs": await repository.erase_call_legs(
            session, phones=sorted(phones), phone_patterns=sorted(patterns)
        ),
        # Forwards carry numbers in E.164 and emails lower-cased, as intake wrote them.
        "outbox": await repository.erase_outbox(session, needles=sorted(phones | emails)),
    }
    await repository.record_erasure(session, request.id, counts)
    return ErasureResult(id=request.id, erased=ErasureCounts(**counts), completed_at=utcnow())
