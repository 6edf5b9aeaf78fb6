"""Promises at risk (§14): which open callbacks will not be started by their `promised_by`.

Every minute, per queue, the available agents (capped by the plan) are simulated working the
waiting callbacks in rank order at the observed handle time (`simulation.start_times`, the
claim's own order). A callback the simulation starts after its promise is at risk:

- once per promise it gets a `callback_at_risk` event (history sends the webhook), and once
  it recovers a `callback_back_on_track` one; `PromiseMark` remembers which were sent;
- `ringback_promises_at_risk{queue}` counts the callbacks at risk now;
- with `RINGBACK_AT_RISK_OFFER=true` the customer is offered a later time, once, by SMS.

Agents: those `/v1/agents` knows as available in the queue, each counting `1/n` in each of
the `n` queues they serve; in the plan's hours, never more than the plan has (later days:
the plan). A queue no rostered agent serves is taken to be staffed as planned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, cast

import structlog
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import events, notify, queues, repository, staffing
from services.callback.jobs import ArqNotificationQueue, NotificationQueue
from services.callback.models import (
    Callback,
    NotificationKind,
)
from services.callback.selfservice import self_service_link
from services.callback.settings import CallbackSettings
from services.callback.simulation import HOUR, NEVER, Staff, start_times
from services.callback.tasks import state_of
from services.callback.templates import render_at_risk_offer
from shared.contracts import Language
from shared.db import commit, utcnow
from shared.vocabulary import AgentPresence, EventType, NotificationChannel

log = structlog.get_logger("ringback.callback.promises")

# "N promises at risk in the next 2 hours; M more agents now would keep them."
OUTLOOK = timedelta(hours=2)
# How far ahead agents are simulated: a promise past this is not judged.
HORIZON = timedelta(days=14)


class PromiseMetrics:
    """`ringback_promises_at_risk{queue}` in the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.at_risk = Gauge(
            "ringback_promises_at_risk",
            "Open callbacks the at-risk job expects to start after their promised_by.",
            ["queue"],
            registry=registry,
        )


# ----------------------------------------------------------------------------- the outlook


@dataclass(frozen=True, slots=True)
class Waiting:
    """The waiting callbacks of a queue in rank order, as the simulation reads them."""

    ids: list[str]
    ready: list[float]
    promised: list[float]
    promised_at: list[datetime]


@dataclass(frozen=True, slots=True)
class Outlook:
    """One run of the simulation for a queue: who starts when, and who starts too late."""

    now: datetime
    waiting: Waiting
    staff: Staff
    handle_seconds: float
    starts: list[float]
    horizon: float

    def late(self, index: int) -> bool:
        """Started after the promise (a promise past the horizon is not judged)."""
        promised = self.waiting.promised[index]
        return promised < self.horizon and self.starts[index] > promised

    def at(self, seconds: float) -> datetime | None:
        return None if seconds == NEVER else self.now + timedelta(seconds=seconds)


async def waiting(
    session: AsyncSession, key: str, *, now: datetime, limit: int | None = None
) -> Waiting:
    """The queue's waiting callbacks in the claim's order: priority, then `rank_at`."""
    rows = await repository.waiting_in_rank_order(session, key, limit=limit)
    return Waiting(
        ids=[row[0] for row in rows],
        ready=[max(0.0, (row[1] - now).total_seconds()) for row in rows],
        promised=[(row[2] - now).total_seconds() for row in rows],
        promised_at=[row[2] for row in rows],
    )


async def available_speeds(session: AsyncSession, key: str) -> list[float] | None:
    """One speed per available agent of the queue (1/n for an agent in n queues), fastest
    first; None when no agent the roster knows serves the queue at all."""
    serving = await repository.agents_serving(session, key)
    if not serving:
        return None
    speeds = [1.0 / n for n, presence in serving if presence == AgentPresence.AVAILABLE]
    return sorted(speeds, reverse=True)


def staff_for(
    rules: queues.QueueRules, *, now: datetime, speeds: list[float] | None, horizon: timedelta
) -> Staff:
    """Who works from `now`: today the available agents capped by the plan, later the plan."""
    plan, zone = rules.plan, rules.zone
    if plan is None:
        return Staff(speeds=speeds or [])
    local = now.astimezone(zone)
    hour_start = datetime.combine(local.date(), time(local.hour), tzinfo=zone).astimezone(UTC)
    caps: list[int] = []
    moment = hour_start
    while moment < now + horizon:
        at = moment.astimezone(zone)
        planned = staffing.planned_at(plan, at.date(), at.hour)
        today = at.date() == local.date()
        caps.append(min(planned, len(speeds)) if today and speeds is not None else planned)
        moment += timedelta(hours=1)
    present = speeds if speeds is not None else []
    # Later days bring the plan's agents, counted whole.
    padded = [*present, *[1.0] * max(0, max(caps, default=0) - len(present))]
    return Staff(speeds=padded, caps=caps, origin=(hour_start - now).total_seconds())


async def outlook(
    session: AsyncSession, settings: CallbackSettings, key: str, *, now: datetime
) -> Outlook:
    rules = await queues.rules(session, settings, key)
    handle = await staffing.observed_handle_seconds(session, key, now=now)
    queue = await waiting(session, key, now=now)
    speeds = await available_speeds(session, key)
    staff = staff_for(rules, now=now, speeds=speeds, horizon=HORIZON)
    view = simulate(queue, staff, handle_seconds=handle, now=now)
    if rules.plan is None and speeds is None:
        # Neither a plan nor a roster: nothing says who works, so nothing is judged (rather
        # than every promise announced at risk because nobody is known to be there).
        return replace(view, horizon=-math.inf)
    return view


def simulate(queue: Waiting, staff: Staff, *, handle_seconds: float, now: datetime) -> Outlook:
    starts = start_times(queue.ready, [handle_seconds] * len(queue.ids), staff)
    horizon = (
        staff.origin + len(staff.caps) * HOUR if staff.caps is not None else HORIZON.total_seconds()
    )
    return Outlook(
        now=now,
        waiting=queue,
        staff=staff,
        handle_seconds=handle_seconds,
        starts=starts,
        horizon=horizon,
    )


def _with_more_agents(staff: Staff, more: int, until: float) -> Staff:
    """`staff` plus `more` full agents working from now until `until`, whatever the plan says."""
    speeds = [*[1.0] * more, *staff.speeds]
    if staff.caps is None:
        return Staff(speeds=speeds)
    caps = [
        cap + more if staff.origin + k * HOUR < until else cap for k, cap in enumerate(staff.caps)
    ]
    return Staff(speeds=speeds, caps=caps, origin=staff.origin)


def soon_at_risk(view: Outlook, within: timedelta = OUTLOOK) -> list[int]:
    """Indexes of the callbacks at risk whose promise falls within `within` of now."""
    limit = within.total_seconds()
    return [
        i
        for i in range(len(view.waiting.ids))
        if view.late(i) and view.waiting.promised[i] <= limit
    ]


def more_agents_needed(view: Outlook, within: timedelta = OUTLOOK) -> int:
    """The fewest extra agents from now that would start every promise due `within` in time.

    A promise nobody could keep (due before the callback may be called) does not count.
    Adding an agent never starts anyone later, so the answer is found by bisection.
    """
    keepable = [
        i for i in soon_at_risk(view, within) if view.waiting.ready[i] <= view.waiting.promised[i]
    ]
    if not keepable:
        return 0
    until = within.total_seconds()

    def kept(more: int) -> bool:
        starts = start_times(
            view.waiting.ready,
            [view.handle_seconds] * len(view.waiting.ids),
            _with_more_agents(view.staff, more, until),
        )
        return all(starts[i] <= view.waiting.promised[i] for i in keepable)

    # With one more agent per callback, each starts the moment it falls due.
    low, high = 0, len(view.waiting.ids)
    while low < high:
        middle = (low + high) // 2
        if kept(middle):
            high = middle
        else:
            low = middle + 1
    return low


def summary(at_risk: int, more: int, within: timedelta = OUTLOOK) -> str:
    hours = int(within.total_seconds() // 3600)
    promises = "promise" if at_risk == 1 else "promises"
    agents = "agent" if more == 1 else "agents"
    return (
        f"{at_risk} {promises} at risk in the next {hours} hours; "
        f"{more} more {agents} now would keep them"
    )


async def now_view(
    *, session: AsyncSession, settings: CallbackSettings, key: str, now: datetime
) -> staffing.StaffingNow:
    """What the supervisor sees: `GET /v1/queues/{key}/staffing?now=true` (and the wallboard)."""
    view = await outlook(session, settings, key, now=now)
    at_risk = len(soon_at_risk(view))
    more = more_agents_needed(view) if at_risk else 0
    speeds = await available_speeds(session, key)
    return staffing.StaffingNow(
        at_risk=at_risk,
        horizon_minutes=int(OUTLOOK.total_seconds() // 60),
        more_agents=more,
        available_agents=round(sum(speeds or []), 2),
        summary=summary(at_risk, more),
    )


# ----------------------------------------------------------------------------- the job


@dataclass(frozen=True, slots=True)
class Checked:
    """What one run found in one queue."""

    at_risk: int
    newly: list[str]
    recovered: list[str]


async def check_queue(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    key: str,
    now: datetime,
    notifications: NotificationQueue | None = None,
) -> Checked:
    """Mark the queue's callbacks at risk and back on track, each once per promise.

    Rows are read and written as plain values in bulk, and a mark is written only when what
    it says changes: in steady state a run of 10,000 callbacks writes nothing (bench/).
    """
    # Two workers checking one queue at once would announce a promise twice.
    await repository.lock(session, "promises", key)
    view = await outlook(session, settings, key, now=now)
    marks = {row.callback_id: row for row in await repository.promise_marks(session, key)}
    newly: list[str] = []
    recovered: list[str] = []
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    said: dict[str, dict[str, Any]] = {}
    for index, callback_id in enumerate(view.waiting.ids):
        late = view.late(index)
        mark = marks.get(callback_id)
        if mark is None and not late:
            continue
        promised = view.waiting.promised_at[index]
        # A new promise (a rebooking) is announced afresh.
        fresh = mark is None or mark.promised_by != promised
        at_risk_at = None if fresh or mark is None else mark.at_risk_at
        recovered_at = None if fresh or mark is None else mark.recovered_at
        if late and at_risk_at is None:
            at_risk_at = now
            newly.append(callback_id)
        elif not late and at_risk_at is not None and recovered_at is None:
            recovered_at = now
            recovered.append(callback_id)
        values = {
            "callback_id": callback_id,
            "promised_by": promised,
            "at_risk": late,
            "expected_start": view.at(view.starts[index]),
            "at_risk_at": at_risk_at,
            "recovered_at": recovered_at,
            "updated_at": now,
        }
        said[callback_id] = values
        if mark is None:
            inserts.append({**values, "queue": key, "offered_at": None})
        elif fresh or (late, at_risk_at, recovered_at) != (
            mark.at_risk,
            mark.at_risk_at,
            mark.recovered_at,
        ):
            updates.append(values)
    seen = set(view.waiting.ids)
    # Claimed, moved or closed: started (or ended), so no longer at risk here.
    gone = [c for c, mark in marks.items() if mark.at_risk and c not in seen]
    await repository.write_promise_marks(
        session, queue=key, new=inserts, changed=updates, gone=gone, now=now
    )
    callbacks = await _announce(session, newly, recovered, said=said)
    if settings.at_risk_offer and notifications is not None:
        already = {c for c, mark in marks.items() if mark.offered_at is not None}
        await _offer_later_time(
            session,
            notifications,
            settings=settings,
            key=key,
            callbacks=[callbacks[c] for c in newly if c not in already],
            said=said,
            now=now,
        )
    at_risk = sum(1 for i in range(len(view.waiting.ids)) if view.late(i))
    if newly or recovered:
        log.info(
            "callback.promises.checked",
            queue=key,
            at_risk=at_risk,
            newly=len(newly),
            recovered=len(recovered),
        )
    return Checked(at_risk=at_risk, newly=newly, recovered=recovered)


async def _announce(
    session: AsyncSession,
    newly: Sequence[str],
    recovered: Sequence[str],
    *,
    said: dict[str, dict[str, Any]],
) -> dict[str, Callback]:
    if not newly and not recovered:
        return {}
    callbacks = await repository.callbacks_by_id(session, [*newly, *recovered])
    for ids, type_, words in (
        (newly, EventType.CALLBACK_AT_RISK, "At risk: expected to start after its promise"),
        (recovered, EventType.CALLBACK_BACK_ON_TRACK, "Back on track: expected in time"),
    ):
        for callback_id in ids:
            expected = said[callback_id]["expected_start"]
            extra: dict[str, Any] = {
                "promised_by": said[callback_id]["promised_by"].isoformat(),
                "expected_start": expected.isoformat() if expected is not None else None,
            }
            await events.callback_changed(
                session, callback=callbacks[callback_id], type=type_, summary=words, extra=extra
            )
    return callbacks


async def _offer_later_time(
    session: AsyncSession,
    notifications: NotificationQueue,
    *,
    settings: CallbackSettings,
    key: str,
    callbacks: Sequence[Callback],
    said: dict[str, dict[str, Any]],
    now: datetime,
) -> None:
    """`RINGBACK_AT_RISK_OFFER`: one SMS per callback with the link to choose a later time.

    It goes through `notify.send`, so consent, the do-not-call list, the SMS regions and the
    per-number ceiling apply as to every SMS. One the queue's quiet hours would hold past the
    promise is not sent: by then the promise is broken and the offer says nothing true.
    """
    rules = await queues.rules(session, settings, key)
    offered = []
    for callback in callbacks:
        promised = said[callback.id]["promised_by"]
        if promised <= now or rules.sms_send_at(now) >= promised:
            continue
        text = render_at_risk_offer(
            language=cast(Language, callback.language),
            name=callback.name,
            promised_by=promised,
            now=now,
            tz=rules.zone,
            link=self_service_link(settings, callback.id),
        )
        message = notify.Message(
            NotificationKind.AT_RISK_OFFER,
            f"at_risk_offer:{callback.id}",
            text,
            frozenset({NotificationChannel.SMS}),
        )
        await notify.send(
            session, notifications, settings=settings, callback=callback, messages=[message],
            now=now,
        )  # fmt: skip
        offered.append(callback.id)
    if offered:
        # Once per callback, sent or refused by a ceiling alike: the customer is asked once.
        await repository.mark_offered(session, offered, now)


async def check_all(
    *,
    sessions: Any,
    settings: CallbackSettings,
    now: datetime,
    metrics: PromiseMetrics | None = None,
    notifications: NotificationQueue | None = None,
) -> dict[str, Checked]:
    """Check every queue, each in its own transaction (one queue's trouble stops no other)."""
    async with sessions() as session:
        keys = [q.key for q in await repository.all_queues(session)] or [queues.DEFAULT]
    found: dict[str, Checked] = {}
    for key in keys:
        try:
            async with sessions() as session:
                found[key] = await check_queue(
                    session=session,
                    settings=settings,
                    key=key,
                    now=now,
                    notifications=notifications,
                )
                await commit(session)
        except Exception:
            log.exception("callback.promises.failed", queue=key)
            continue
        if metrics is not None:
            metrics.at_risk.labels(queue=key).set(found[key].at_risk)
    return found


CHECK_PROMISES = "check_promises"


async def check_promises(ctx: dict[str, Any]) -> int:
    """Cron, every minute: check every queue's promises; returns the callbacks newly at risk."""
    state = state_of(ctx)
    metrics = state.job_metrics(PromiseMetrics)
    redis = ctx.get("redis")
    found = await check_all(
        sessions=state.sessions,
        settings=state.settings,
        now=utcnow(),
        metrics=metrics,
        notifications=(
            ArqNotificationQueue(redis, queue_name=state.settings.queue_name)
            if redis is not None
            else None
        ),
    )
    return sum(len(checked.newly) for checked in found.values())
