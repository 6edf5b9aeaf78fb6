"""`PATCH /v1/callbacks/{id}` (§9): priority, owner, and moving a callback to another queue.

A move keeps the SLA clock (first contact and deadline stand) and gives back a seat held in
the old queue's slot: the callback waits in the new queue, due when it was due.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, events, inputs, lifecycle, queues, repository
from services.callback.models import WAITING_STATUSES, Callback
from services.callback.settings import CallbackSettings
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.vocabulary import OPEN_STATUSES, CallbackStatus

log = structlog.get_logger("ringback.callback.changes")


class CallbackPatch(BaseModel):
    """Only the fields sent change; `owner_agent_id: null` frees an owned callback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    queue: Annotated[str, Field(max_length=40)] | None = None
    owner_agent_id: Annotated[str, Field(max_length=64)] | None = None
    owner_until: AwareDatetime | None = None


async def patch(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    callback_id: str,
    body: CallbackPatch,
    actor: dict[str, Any] | None,
    now: datetime | None = None,
) -> Callback:
    now = now or utcnow()
    callback = await repository.lock_callback(session, callback_id)
    if callback is None:
        raise NotFound("No callback has this id.")
    if callback.status not in OPEN_STATUSES:
        raise Conflict(
            f"This callback is {callback.status} and can no longer be changed.",
            extra={"current_status": callback.status},
        )
    given = body.model_fields_set
    said: list[str] = []
    if "priority" in given and body.priority is not None:
        callback.priority = body.priority
        said.append(f"priority {body.priority}")
    if "owner_agent_id" in given:
        owner = inputs.agent_id(body.owner_agent_id, ["body", "owner_agent_id"])
        if owner != callback.owner_agent_id:
            # A new owner's hold is their own, never what is left of the last one's.
            callback.owner_until = None
        callback.owner_agent_id = owner
        said.append(f"owner {owner or 'none'}")
    if "owner_until" in given:
        callback.owner_until = body.owner_until
    if callback.owner_agent_id is None:
        callback.owner_until = None
    elif callback.owner_until is None:
        # The default hold (§9): until this long after the callback falls due.
        callback.owner_until = callback.due_at + timedelta(minutes=settings.owner_minutes)
    moved = "queue" in given and body.queue is not None and body.queue != callback.queue
    if moved:
        assert body.queue is not None
        await _move(session, callback, body.queue, now=now)
        said.append(f"moved to queue {body.queue}")
    callback.updated_at = now
    if moved and callback.status == CallbackStatus.SCHEDULED:
        # Its seat stayed with the old queue: it waits in the new one.
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.PENDING,
            now=now,
            summary=f"Moved to queue {callback.queue}",
            actor=actor,
        )
    elif said:
        # Where it stands again, with the change: history learns the priority and owner.
        await events.callback_changed(
            session,
            callback=callback,
            type=lifecycle.EVENT_FOR[CallbackStatus(callback.status)],
            summary="Changed: " + ", ".join(said),
            actor=actor,
        )
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "The number already has an open callback in that queue.", slug="already-open"
        ) from exc
    log.info("callback.changed", callback_id=callback.id, moved=moved)
    return callback


async def _move(session: AsyncSession, callback: Callback, key: str, *, now: datetime) -> None:
    if key == queues.DEFAULT:
        await queues.ensure_default(session)
    if await repository.get_queue(session, key) is None:
        raise inputs.invalid(["body", "queue"], f"no queue is called {key!r}")
    if callback.status not in WAITING_STATUSES:
        raise Conflict(
            "An agent is working on this callback; move it once they are done.",
            extra={"current_status": callback.status},
        )
    await repository.lock(session, "phone", callback.phone)
    if await repository.find_open_for_phone(session, callback.phone, key) is not None:
        raise Conflict(
            "The number already has an open callback in that queue.", slug="already-open"
        )
    # The seat belongs to the old queue's slot; the callback waits in the new one.
    await booking.release(session, callback, now=now)
    callback.queue = key
    callback.queue_reason = None
