"""What a customer can see and do through their signed link: view, cancel or rebook."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, cast

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import booking, cancellation, ceilings, inputs, queues, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import WAITING_STATUSES, Callback
from services.callback.reading import slot_ref
from services.callback.schemas import SelfServiceSlot, SelfServiceView
from services.callback.selfservice import check_token
from services.callback.settings import CallbackSettings
from services.callback.templates import asap_phrase, status_phrase, window_phrase
from shared.contracts import Language
from shared.db import utcnow
from shared.errors import Conflict, NotFound, ProblemError
from shared.vocabulary import CallbackStatus

# How far ahead a customer is offered other times (bounded again by `slots_max_range_days`).
DAYS_AHEAD: Final = 7


class LinkExpired(ProblemError):
    status, title, slug = 410, "Gone", "link-expired"


def days_ahead(settings: CallbackSettings) -> int:
    return min(DAYS_AHEAD, settings.slots_max_range_days)


async def free_slots(
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    *,
    now: datetime,
    language: Language,
) -> tuple[list[SelfServiceSlot], str]:
    """The times `callback` may move to, and the zone they are local to.

    Slots of its queue with a free seat that start later than now, not the one it holds. The
    JSON view and the page both offer these, so the two never disagree about what is free.
    """
    listing = await booking.list_slots(
        session=session,
        settings=settings,
        start=now,
        end=now + timedelta(days=days_ahead(settings)),
        now=now,
        language=language,
        queue=callback.queue,
    )
    held = slot_ref(callback)
    free = [
        SelfServiceSlot(id=slot.id, start=slot.start, end=slot.end, label=slot.label)
        for slot in listing.items
        if slot.available > 0 and slot.start > now and slot.id != held
    ]
    return free, listing.timezone


async def _self_callback(
    session: AsyncSession, settings: CallbackSettings, token: str, *, lock: bool
) -> Callback:
    """The one callback a token grants; 404 for anything forged, 410 for an old link."""
    state, callback_id = check_token(settings, token)
    if state == "expired":
        raise LinkExpired("This link has expired.")
    if callback_id is None:
        raise NotFound("Nothing here.")
    if lock:
        callback = await repository.lock_callback(session, callback_id)
    else:
        callback = await repository.get_callback(session, callback_id)
    if callback is None or callback.erased_at is not None:
        raise NotFound("Nothing here.")
    return callback


async def self_view(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    token: str,
    now: datetime | None = None,
    language: Language | None = None,
) -> SelfServiceView:
    """The customer's view, in `language` (the page's switch) or else the callback's own."""
    callback = await _self_callback(session, settings, token, lock=False)
    return await _self_out(session, settings, callback, now or utcnow(), language=language)


async def _self_out(
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    now: datetime,
    *,
    language: Language | None = None,
) -> SelfServiceView:
    rules = await queues.rules(session, settings, callback.queue)
    plan, zone = rules.plan, rules.zone
    language = language or cast(Language, callback.language)
    stands = status_phrase(language, callback.status)
    if stands is not None:
        when = stands
    elif callback.slot_start is not None and callback.slot_end is not None:
        when = window_phrase(
            language, start=callback.slot_start, end=callback.slot_end, now=now, tz=zone
        )
    else:
        when = asap_phrase(language, deadline=callback.sla_deadline, now=now, tz=zone)
    waiting = callback.status in WAITING_STATUSES
    rebooks_left = await ceilings.rebooks_left(session, settings, callback, now=now)
    can_rebook = waiting and plan is not None and rebooks_left > 0
    free, timezone = (
        await free_slots(session, settings, callback, now=now, language=language)
        if can_rebook
        else ([], zone.key)
    )
    return SelfServiceView(
        status=CallbackStatus(callback.status),
        asap=callback.asap,
        due_at=callback.due_at,
        sla_deadline=callback.sla_deadline,
        slot_id=slot_ref(callback),
        slot_start=callback.slot_start,
        slot_end=callback.slot_end,
        when=when,
        language=language,
        can_cancel=waiting,
        can_rebook=can_rebook,
        rebooks_left_today=rebooks_left,
        free_slots=free,
        queue=callback.queue,
        timezone=timezone,
    )


async def self_act(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    token: str,
    action: str,
    slot_id_in: str | None,
    queue: NotificationQueue,
    now: datetime | None = None,
    language: Language | None = None,
) -> SelfServiceView:
    """The customer cancels or rebooks their own callback (not one an agent is working on).

    Rebooks are capped per day (each sends a notice, `ceilings`); a cancel is always taken,
    since it ends the callback and can happen once.
    """
    now = now or utcnow()
    callback = await _self_callback(session, settings, token, lock=True)
    if callback.status not in WAITING_STATUSES:
        raise Conflict(f"This callback is {callback.status} and can no longer be changed.")
    actor = {"kind": "customer"}
    if action == "cancel":
        callback = await cancellation.cancel(
            session=session,
            settings=settings,
            callback_id=callback.id,
            queue=queue,
            by="customer",
            actor=actor,
            now=now,
        )
    else:
        if not slot_id_in:
            raise inputs.invalid(["body", "slot_id"], "rebooking needs a slot_id")
        await ceilings.check_rebook(session, settings, callback, now=now)
        seq = callback.booking_seq
        callback = await booking.book(
            session=session,
            settings=settings,
            callback_id=callback.id,
            slot_ref_in=slot_id_in,
            queue=queue,
            actor=actor,
            now=now,
        )
        # Booking the slot it already holds changes and sends nothing, so it is not counted.
        if callback.booking_seq != seq:
            await ceilings.count_rebook(session, callback, now=now)
    return await _self_out(session, settings, callback, now, language=language)
