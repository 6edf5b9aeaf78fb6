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
from services.callback.models import Callback
from shared.errors import Conflict

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"scheduled", "in_progress", "completed", "cancelled", "expired"}),
    # scheduled → scheduled is a rebooking.
    "scheduled": frozenset({"scheduled", "in_progress", "completed", "cancelled", "expired"}),
    # → pending/scheduled: a retry is due later, or the agent's lease ran out.
    "in_progress": frozenset({"pending", "scheduled", "completed", "failed", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
}

# The event each target state announces (a retry is `callback_attempted`, chosen by the caller).
EVENT_FOR: dict[str, str] = {
    "pending": "callback_scheduled",
    "scheduled": "callback_scheduled",
    "in_progress": "callback_claimed",
    "completed": "callback_completed",
    "failed": "callback_failed",
    "cancelled": "callback_cancelled",
    "expired": "callback_expired",
}


def can(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check(callback: Callback, target: str) -> None:
    """409 unless `callback` may move to `target`."""
    if not can(callback.status, target):
        raise Conflict(
            f"A callback that is {callback.status} cannot become {target}.",
            extra={"current_status": callback.status},
        )


async def transition(
    session: AsyncSession,
    callback: Callback,
    target: str,
    *,
    now: datetime,
    summary: str,
    event_type: str | None = None,
    outcome: str | None = None,
    actor: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Move `callback` to `target` (409 if the table forbids it) and record the event."""
    check(callback, target)
    callback.status = target
    callback.updated_at = now
    if target != "in_progress":
        callback.agent_id = None
        callback.lease_expires_at = None
    if target in TERMINAL:
        callback.closed_at = now
        callback.confirm_key = None
        callback.flag = None
        if outcome is not None:
            callback.outcome = outcome
    await events.callback_changed(
        session,
        callback=callback,
        type=event_type or EVENT_FOR[target],
        summary=summary,
        actor=actor,
        extra=extra,
    )
