"""Callbacks and notifications as the API shows them: one callback, and pages of either."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import inputs, repository, voicemails
from services.callback.capacity import slot_id
from services.callback.models import Callback, rank_at_of
from services.callback.promise import promised_by_of
from services.callback.schemas import (
    AttemptOut,
    CallbackDetail,
    CallbackList,
    CallbackOut,
    ConsentOut,
    DialOut,
    NotificationList,
    NotificationOut,
    UnverifiedContact,
)
from services.callback.settings import CallbackSettings
from shared.contracts import Language
from shared.errors import NotFound
from shared.pagination import page_of, read_cursor, row_id
from shared.vocabulary import CallbackStatus, ClosingOutcome


def slot_ref(callback: Callback) -> str | None:
    return slot_id(callback.slot_start) if callback.slot_start is not None else None


def to_out(callback: Callback) -> CallbackOut:
    return CallbackOut(
        id=callback.id,
        phone=callback.phone,
        queue=callback.queue,
        queue_reason=callback.queue_reason,
        email=callback.email,
        name=callback.name,
        language=cast(Language, callback.language),
        language_known=callback.language_known,
        status=CallbackStatus(callback.status),
        source=callback.source,
        channel=callback.channel,
        priority=callback.priority,
        rank_at=rank_at_of(callback),
        promised_by=promised_by_of(callback),
        requested_in_queue=callback.queued_at is not None,
        queued_at=callback.queued_at,
        owner_agent_id=callback.owner_agent_id,
        owner_until=callback.owner_until,
        first_contact_at=callback.first_contact_at,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        contact_count=callback.contact_count,
        consent=ConsentOut(sms=callback.consent_sms, email=callback.consent_email),
        message=callback.message,
        unverified=(
            UnverifiedContact(
                email=callback.unverified_email,
                name=callback.unverified_name,
                message=callback.unverified_message,
                given_at=callback.unverified_at,
            )
            if callback.unverified_at is not None
            else None
        ),
        last_confirmation_at=callback.last_confirmation_at,
        asap=callback.asap,
        slot_id=slot_ref(callback),
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        flag=callback.flag,
        agent_id=callback.agent_id,
        lease_expires_at=callback.lease_expires_at,
        attempt_count=callback.attempt_count,
        outcome=ClosingOutcome(callback.outcome) if callback.outcome is not None else None,
        closed_at=callback.closed_at,
        created_at=callback.created_at,
        updated_at=callback.updated_at,
    )


async def get_callback(*, session: AsyncSession, callback_id: str) -> CallbackDetail:
    """The callback with its attempts and notifications; 404 when there is none."""
    callback = await repository.get_callback(session, callback_id, with_notifications=True)
    if callback is None:
        raise NotFound("No callback has this id.")
    return CallbackDetail(
        **to_out(callback).model_dump(),
        attempts=[AttemptOut.model_validate(a) for a in callback.attempts],
        notifications=[NotificationOut.model_validate(n) for n in callback.notifications],
        dials=[DialOut.model_validate(d) for d in await repository.dials_of(session, callback.id)],
        voicemails=[
            voicemails.view(v)
            for v in await repository.voicemails_of_callback(session, callback.id)
        ],
    )


def _after_id(cursor: str | None) -> str | None:
    """The row id a cursor of ours points after (both lists page by id)."""
    return read_cursor(cursor, row_id)[0] if cursor else None


async def list_callbacks(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    status: str | None,
    phone: str | None,
    due_before: datetime | None,
    limit: int,
    cursor: str | None,
    agent_id: str | None = None,
    queue: str | None = None,
) -> CallbackList:
    """One page of callbacks, newest first."""
    e164 = inputs.phone(phone, settings, ["query", "phone"]) if phone is not None else None
    rows = await repository.list_callbacks(
        session,
        status=status,
        phone=e164,
        agent_id=agent_id,
        queue=queue,
        due_before=inputs.aware(due_before) if due_before else None,
        after_id=_after_id(cursor),
        limit=limit + 1,
    )
    page, next_cursor = page_of(rows, limit, lambda row: (row.id,))
    return CallbackList(items=[to_out(c) for c in page], next_cursor=next_cursor)


async def list_notifications(
    *, session: AsyncSession, status: str | None, limit: int, cursor: str | None
) -> NotificationList:
    """One page of notifications, oldest first."""
    rows = await repository.list_notifications(
        session, status=status, after_id=_after_id(cursor), limit=limit + 1
    )
    page, next_cursor = page_of(rows, limit, lambda row: (row.id,))
    return NotificationList(
        items=[NotificationOut.model_validate(n) for n in page], next_cursor=next_cursor
    )
