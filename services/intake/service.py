"""Intake's rules: keep everything a caller sent, decide what it means, queue the forwards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import repository
from services.intake.models import IntakeOutbox
from services.intake.providers.base import CallReport
from shared.contracts import Accepted, CallbackCreate, CustomerRef, EventIn, Ref
from shared.ids import new_id
from shared.outbox import enqueue
from shared.phone import normalize

# Request headers worth keeping with a raw record; never credentials.
_KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "x-request-id",
    "x-forwarded-for",
)


@dataclass(frozen=True, slots=True)
class RawRequest:
    """The bytes and headers as they arrived, before anything was parsed."""

    body: bytes
    content_type: str | None
    headers: dict[str, str]

    @classmethod
    def capture(cls, body: bytes, headers: Any) -> RawRequest:
        kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
        return cls(body=body, content_type=headers.get("content-type"), headers=kept)


async def record_call(
    *, session: AsyncSession, report: CallReport, raw: RawRequest, region: str
) -> Accepted:
    """Store a verified call report with its forwards; a redelivered call is a duplicate."""
    phone = normalize(report.caller, region)
    wants_callback = report.outcome == "missed" and phone is not None
    inbound_id = await repository.insert_inbound(
        session,
        {
            "provider": report.provider,
            "kind": "call",
            "external_id": report.call_id,
            "status": "accepted" if wants_callback else "recorded",
            "content_type": raw.content_type,
            "headers": raw.headers,
            "body": raw.body,
            "phone": phone,
            "summary": {"outcome": report.outcome, "status": report.status},
        },
    )
    if inbound_id is None:
        existing = await repository.find_by_external_id(session, report.provider, report.call_id)
        return Accepted(id=existing or "", status="duplicate")
    if report.outcome == "ignored":
        return Accepted(id=inbound_id, status="recorded")

    ordering_key = phone or f"inbound:{inbound_id}"
    await enqueue(
        session,
        IntakeOutbox,
        destination="history",
        path="/v1/events",
        payload=_call_event(report, inbound_id, phone).model_dump(mode="json", exclude_none=True),
        ordering_key=ordering_key,
    )
    if wants_callback:
        assert phone is not None
        create = CallbackCreate(
            request_id=f"inbound:{inbound_id}",
            source="missed_call",
            channel="phone",
            first_contact_at=report.occurred_at,
            phone=phone,
            email=report.email,
            name=report.name,
            language=report.language,
            queue=report.queue,
            inbound_id=inbound_id,
        )
        await enqueue(
            session,
            IntakeOutbox,
            destination="callback",
            path="/v1/callbacks",
            payload=create.model_dump(mode="json", exclude_none=True),
            ordering_key=ordering_key,
        )
    return Accepted(id=inbound_id, status="accepted" if wants_callback else "recorded")


async def record_rejected(
    *,
    session: AsyncSession,
    provider: str,
    kind: str,
    raw: RawRequest,
    reason: str,
    body_limit: int,
) -> str:
    """Keep an authentic but unusable payload, bounded in size, for an operator to inspect."""
    inbound_id = await repository.insert_inbound(
        session,
        {
            "provider": provider,
            "kind": kind,
            "external_id": None,
            "status": "rejected",
            "reason": reason[:2000],
            "content_type": raw.content_type,
            "headers": raw.headers,
            "body": raw.body[:body_limit],
            "body_truncated": len(raw.body) > body_limit,
            "summary": {},
        },
    )
    assert inbound_id is not None
    return inbound_id


def _call_event(report: CallReport, inbound_id: str, phone: str | None) -> EventIn:
    missed = report.outcome == "missed"
    if phone is None:
        summary = "Missed call from a withheld number" if missed else "Call answered (withheld)"
    else:
        summary = "Missed call" if missed else "Call answered"
    data: dict[str, Any] = {"provider": report.provider, "call_id": report.call_id}
    data["status"] = report.status
    if report.queue:
        data["queue"] = report.queue
    if phone is None:
        data["caller_withheld"] = True
    return EventIn(
        id=new_id(),
        occurred_at=report.occurred_at,
        channel="phone",
        direction="inbound",
        type="missed_call" if missed else "call_answered",
        customer=CustomerRef(phone=phone, email=report.email, name=report.name),
        subject=Ref(kind="inbound", id=inbound_id),
        actor=Ref(kind="customer"),
        summary=summary,
        data=data,
    )
