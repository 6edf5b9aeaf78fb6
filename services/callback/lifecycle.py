"""The callback lifecycle as one explicit transition table, and the one function that moves it.

```
pending ──book──▶ scheduled ──claim──▶ in_progress ──reached──▶ completed
   │  ▲              │  ▲ rebook          │  │ no answer, tries left ─▶ pending (retry time)
   │  └──────────────┼──┼─────────────────┘  │ lease ran out ─▶ pending | scheduled
   │                 │  └────────────────────┘ last try, wrong number, declined ─▶ failed
   └─ claim, answered inbound, cancel, SLA passed ─▶ in_progress | completed | cancelled | expired
```

Every transition writes its history event in the same transaction (`events.callback_changed`),
carrying status, due time, slot and agent, so history can tell where a callback stands.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import events
from services.callback.models import Callback, moving_status
from shared.errors import Conflict
from shared.vocabulary import TERMINAL_STATUSES, CallbackStatus, ClosingOutcome, EventType

_S = CallbackStatus

TRANSITIONS: dict[CallbackStatus, frozenset[CallbackStatus]] = {
    _S.PENDING: frozenset({_S.SCHEDULED, _S.IN_PROGRESS, _S.COMPLETED, _S.CANCELLED, _S.EXPIRED}),
    # scheduled → scheduled is a rebooking; → pending, a move to another queue (its seat back).
    _S.SCHEDULED: frozenset(
        {_S.SCHEDULED, _S.PENDING, _S.IN_PROGRESS, _S.COMPLETED, _S.CANCELLED, _S.EXPIRED}
    ),
    # → pending/scheduled: a retry is due later, or the agent's lease ran out.
    _S.IN_PROGRESS: frozenset({_S.PENDING, _S.SCHEDULED, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.EXPIRED: frozenset(),
}

# The event each target state announces (a retry is `callback_attempted`, chosen by the caller).
EVENT_FOR: dict[CallbackStatus, EventType] = {
    _S.PENDING: EventType.CALLBACK_SCHEDULED,
    _S.SCHEDULED: EventType.CALLBACK_SCHEDULED,
    _S.IN_PROGRESS: EventType.CALLBACK_CLAIMED,
    _S.COMPLETED: EventType.CALLBACK_COMPLETED,
    _S.FAILED: EventType.CALLBACK_FAILED,
    _S.CANCELLED: EventType.CALLBACK_CANCELLED,
    _S.EXPIRED: EventType.CALLBACK_EXPIRED,
}


def can(current: str, target: CallbackStatus) -> bool:
    return target in TRANSITIONS.get(CallbackStatus(current), frozenset())


def check(callback: Callback, target: CallbackStatus) -> None:
    """409 unless `callback` may move to `target`."""
    check_status(callback.status, target)


def check_status(status: str, target: CallbackStatus) -> None:
    """409 unless a callback in `status` may move to `target`."""
    if not can(status, target):
        raise Conflict(
            f"A callback that is {status} cannot become {target}.",
            extra={"current_status": status},
        )


async def transition(
    session: AsyncSession,
    callback: Callback,
    target: CallbackStatus,
    *,
    now: datetime,
    summary: str,
    event_type: EventType | None = None,
    outcome: ClosingOutcome | None = None,
    actor: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    announce: bool = True,
) -> None:
    """Move `callback` to `target` (409 if the table forbids it) and record the event.

    The one function that sets a stored callback's status (`Callback` refuses any other).
    `announce=False` writes no history event: an erasure must not name the person again.
    """
    check(callback, target)
    with moving_status():
        callback.status = target
    callback.updated_at = now
    if target != CallbackStatus.IN_PROGRESS:
        callback.agent_id = None
        callback.lease_expires_at = None
    if target in TERMINAL_STATUSES:
        callback.closed_at = now
        callback.confirm_key = None
        callback.flag = None
        if outcome is not None:
            callback.outcome = outcome
    if not announce:
        return
    await events.callback_changed(
        session,
        callback=callback,
        type=event_type or EVENT_FOR[target],
        summary=summary,
        actor=actor,
        extra=extra,
    )
