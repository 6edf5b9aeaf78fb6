"""A callback asked for while waiting in the phone queue (§11): what intake forwards for it.

Twilio's "press 1" (`waiting.py`) and the generic webhook's `callback_requested` both end here,
so the two make the same callback and the same timeline entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.contracts import CallbackCreate, Consent, CustomerRef, EventIn, Language, Ref
from shared.ids import new_id
from shared.vocabulary import Channel, Direction, EventType


def requested_event(
    *,
    inbound_id: str,
    occurred_at: datetime,
    phone: str | None,
    provider: str,
    call_id: str,
    queue: str | None,
    queued_at: datetime,
    dialed: str | None,
    language: Language | None = None,
) -> EventIn:
    """The `callback_requested` timeline entry: the agent sees the caller asked in the queue.

    The callback itself is a missed-call callback (`source: missed_call`); without this the
    timeline would show only `callback_created`, as if the caller had simply hung up.
    """
    data: dict[str, Any] = {
        "provider": provider,
        "call_id": call_id,
        "queued_at": queued_at.isoformat(),
    }
    if queue:
        data["queue"] = queue
    if dialed:
        data["dialed"] = dialed
    if phone is None:
        data["caller_withheld"] = True
    return EventIn(
        id=new_id(),
        occurred_at=occurred_at,
        channel=Channel.PHONE,
        direction=Direction.INBOUND,
        type=EventType.CALLBACK_REQUESTED,
        customer=CustomerRef(phone=phone, language=language),
        subject=Ref(kind="inbound", id=inbound_id),
        actor=Ref(kind="customer"),
        summary="Asked for a callback while waiting in the phone queue",
        data=data,
    )


def requested_create(
    *,
    inbound_id: str,
    phone: str,
    queue: str | None,
    queued_at: datetime,
    dialed: str | None,
    sms: bool,
    language: Language | None = None,
    email: str | None = None,
    name: str | None = None,
    promised: datetime | None = None,
) -> CallbackCreate:
    """The callback that keeps the caller's place (`queued_at`) and their spoken promise."""
    return CallbackCreate(
        request_id=f"inbound:{inbound_id}",
        source="missed_call",
        channel=Channel.PHONE,
        first_contact_at=queued_at,
        phone=phone,
        email=email,
        name=name,
        language=language,
        queue=queue,
        dialed=dialed,
        inbound_id=inbound_id,
        consent=Consent(sms=sms, email=True),
        queued_at=queued_at,
        estimated_callback_at=promised,
    )
