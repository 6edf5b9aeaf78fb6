"""The callback offered to a caller still waiting in the phone queue (§11): whether, and when.

The estimate is the at-risk job's own simulation (`simulation.start_times` over the inputs
`promises.outlook` reads: the open callbacks in rank order, the available agents capped by the
plan, the handle time observed over 14 days), with one more callback ranked where a caller
entering now would be: the time spoken on the
phone is the time the job will hold the callback to (`told_by`, its `promised_by`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import promises, queues, repository, staffing
from services.callback.api import QueueKey, SessionDep, SettingsDep
from services.callback.capacity import CapacityPlan, iter_slots
from services.callback.settings import CallbackSettings
from services.callback.simulation import NEVER, Staff, start_times
from shared.auth import require_scope
from shared.contracts import QueueOffer
from shared.db import utcnow
from shared.errors import NotFound
from shared.phone import is_callable, normalize
from shared.routing import JsonRoute
from shared.vocabulary import OfferReason

# The site's offer policy where a queue sets none (DESIGN §9's example values).
MAX_WAITING = 200
MAX_WAIT_MINUTES = 240
MIN_WAIT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class OfferPolicy:
    max_waiting: int
    max_wait: timedelta
    min_wait_seconds: int


def policy_of(config: dict[str, Any]) -> OfferPolicy:
    """The queue's `offer` settings, the site's where it leaves one out."""
    own = config.get("offer") or {}

    def pick(name: str, default: int) -> int:
        value = own.get(name)
        return default if value is None else int(value)

    return OfferPolicy(
        max_waiting=pick("max_waiting", MAX_WAITING),
        max_wait=timedelta(minutes=pick("max_wait_minutes", MAX_WAIT_MINUTES)),
        min_wait_seconds=pick("min_wait_seconds", MIN_WAIT_SECONDS),
    )


def closed_today_and_tomorrow(plan: CapacityPlan | None, now: datetime) -> bool:
    """No staffed slot left today, and none tomorrow, in the queue's zone (no plan: open)."""
    if plan is None:
        return False
    local = now.astimezone(plan.zone)
    day_after = datetime.combine(local.date() + timedelta(days=2), datetime.min.time(), plan.zone)
    slots = iter_slots(plan, now - plan.slot_length, day_after)
    return not any(slot.end > now for slot in slots)


def start_after(ahead: promises.Waiting, staff: Staff, *, handle_seconds: float) -> float:
    """Seconds from now until an agent starts a callback ready now, behind `ahead`.

    Callbacks ranked behind it never start before it (it is ready from the start, and a
    free agent takes the first-ranked ready one), so only those ahead are simulated: the
    at-risk job, simulating them all, starts it at the same moment (a test holds them to it).
    """
    ready = [*ahead.ready, 0.0]
    return start_times(ready, [handle_seconds] * len(ready), staff)[-1]


# Intake asks on every call that enters the phone queue, and with 10,000 callbacks ahead one
# simulation costs ~40 ms of CPU. So its answer is kept, per process, for a few seconds under
# everything it read: the callbacks ahead (`ranked_ahead`'s count and version), the agents and
# the plan's hours, the handle time. Any change to those simulates afresh; only time passing
# with nothing changed reuses an answer, at most this old.
ESTIMATE_REUSE = timedelta(seconds=5)
_ESTIMATES_KEPT = 256
_estimates: dict[Hashable, tuple[datetime, float]] = {}


async def _start_at(
    session: AsyncSession,
    key: str,
    *,
    now: datetime,
    ahead: int,
    version: Hashable,
    rules: queues.QueueRules,
    speeds: list[float] | None,
) -> datetime | None:
    """When a callback ready now, behind the `ahead` first waiting ones, starts (None: never)."""
    handle = await staffing.observed_handle_seconds(session, key, now=now)
    plan = None if rules.plan is None else rules.plan.model_dump_json()
    # Within a quarter hour (UTC) the current local hour starts at the same moment in every
    # zone, and `staff_for` counts the plan's hours from there.
    quarter = int(now.timestamp() // 900)
    speeds_in = None if speeds is None else tuple(speeds)
    inputs = (key, ahead, version, handle, speeds_in, plan, str(rules.zone), quarter)
    kept = _estimates.get(inputs)
    if kept is not None and timedelta(0) <= now - kept[0] <= ESTIMATE_REUSE:
        simulated_at, start = kept
    else:
        staff = promises.staff_for(rules, now=now, speeds=speeds, horizon=promises.HORIZON)
        queue = await promises.waiting(session, key, now=now, limit=ahead)
        simulated_at, start = now, start_after(queue, staff, handle_seconds=handle)
        if len(_estimates) >= _ESTIMATES_KEPT:
            _estimates.clear()
        _estimates[inputs] = (now, start)
    if start == NEVER:
        return None
    return max(now, simulated_at + timedelta(seconds=start))


async def estimate(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    key: str,
    now: datetime,
    caller: str | None = None,
) -> QueueOffer:
    """The offer for a caller entering `key`'s phone queue at `now` (404: no such queue).

    The inputs are `promises.outlook`'s, read by the same functions; only the callbacks
    ranked ahead are read and simulated, and the answer reused for a few seconds while
    none of its inputs change (10,000 open callbacks: see bench/offer.py).
    """
    row = await repository.get_queue(session, key)
    if row is None and key != queues.DEFAULT:
        raise NotFound("No queue has this key.")
    policy = policy_of(row.config if row is not None else {})
    rules = queues.rules_of(row, settings)
    ahead, waiting, version = await repository.ranked_ahead(session, key, priority=0, rank_at=now)
    reason = await _refusal(session, settings, rules, caller=caller, now=now)
    if reason is None and waiting >= policy.max_waiting:
        reason = OfferReason.FULL
    at: datetime | None = None
    # The estimate is the queue's, not the caller's: a PBX that may not offer a callback
    # (full, closed, a withheld number) can still tell the caller the wait, and a closed
    # queue's estimate is its next opening (docs/api.md). Null only when nobody is known to
    # work, or nobody in the planned horizon would start it.
    speeds = await promises.available_speeds(session, key)
    # Neither a plan nor a roster says who works: no time can honestly be spoken.
    known = rules.plan is not None or speeds is not None
    if known:
        at = await _start_at(
            session, key, now=now, ahead=ahead, version=version, rules=rules, speeds=speeds
        )
        if reason is None and (at is None or at - now > policy.max_wait):
            reason = OfferReason.TOO_LATE
    return QueueOffer(
        offer=reason is None,
        reason=reason,
        estimated_callback_at=at,
        waiting=waiting,
        position=ahead + 1,
        min_wait_seconds=policy.min_wait_seconds,
    )


async def _refusal(
    session: AsyncSession,
    settings: CallbackSettings,
    rules: queues.QueueRules,
    *,
    caller: str | None,
    now: datetime,
) -> OfferReason | None:
    """The refusals that need no simulation: the number, then the queue's hours."""
    if caller is not None:
        phone = normalize(caller, settings.default_region)
        if phone is None or not is_callable(phone):
            return OfferReason.WITHHELD
        if await repository.is_do_not_call(session, phone):
            return OfferReason.DO_NOT_CALL
    if closed_today_and_tomorrow(rules.plan, now):
        return OfferReason.CLOSED
    return None


router = APIRouter(prefix="/v1/queues", tags=["queues"], route_class=JsonRoute)


@router.get(
    "/{key}/offer",
    summary="Whether to offer a callback to a caller waiting in the phone queue, and when",
    # `internal`: intake asks on the phone system's behalf (its forward and its wait TwiML).
    dependencies=[Depends(require_scope("intake:write", "callbacks:read", "internal"))],
)
async def get_offer(
    key: QueueKey,
    session: SessionDep,
    settings: SettingsDep,
    caller: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=64,
            description="The caller's number: a withheld or do-not-call one is never offered.",
        ),
    ] = None,
) -> QueueOffer:
    return await estimate(session=session, settings=settings, key=key, now=utcnow(), caller=caller)
