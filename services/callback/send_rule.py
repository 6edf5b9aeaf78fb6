"""When the worker may send a notification: one rule, read by its SQL and by its careful path.

The worker claims a send in one autocommitted statement (`repository.claim_due_notifications`,
whose WHERE is `due_condition`); whatever that statement leaves, `tasks._claim_carefully`
looks at under a row lock and explains with `decide`. Both read the declarations below, and
`tests/callback/test_send_rule.py` runs every combination through both and compares.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import ColumnElement, Table, and_, exists, literal, or_

from services.callback.models import NotificationKind
from shared.vocabulary import CallbackStatus, NotificationStatus

# A send starts from these states; `sending` is taken over only once its lease has run out.
STARTABLE: tuple[NotificationStatus, ...] = (NotificationStatus.QUEUED, NotificationStatus.FAILED)
FINISHED: frozenset[NotificationStatus] = frozenset(
    {NotificationStatus.SENT, NotificationStatus.DEAD, NotificationStatus.CANCELLED}
)
# A queued reminder goes out only while its callback is still booked into the slot.
REMINDER_NEEDS = CallbackStatus.SCHEDULED


class Decision(StrEnum):
    """What to do with a notification the worker looked at."""

    SEND = "send"
    FINISHED = "finished"
    NOT_DUE = "not due"
    # A reminder whose callback left its slot: nobody wants it any more.
    UNWANTED = "unwanted"
    # Another job holds the send lease.
    HELD = "held"
    OUT_OF_TRIES = "out of tries"


def due_condition(
    notifications: Table, callbacks: Table, *, due_by: ColumnElement[datetime]
) -> ColumnElement[bool]:
    """Startable, due by `due_by`, tries left, and a queued reminder's callback still booked."""
    n, c = notifications.c, callbacks.c
    return and_(
        # One parameter per status, not a list expanded at each execution: the claim that
        # reads this runs for every send, compiled once (`shared.fast_sql`).
        n.status.in_([literal(status, n.status.type) for status in STARTABLE]),
        n.next_attempt_at <= due_by,
        n.attempts < n.max_attempts,
        or_(
            n.kind != NotificationKind.REMINDER,
            n.status != NotificationStatus.QUEUED,
            exists().where(c.id == n.callback_id, c.status == REMINDER_NEEDS),
        ),
    )


class NotificationState(Protocol):
    """What `decide` reads of a notification (a `Notification` row has it all)."""

    @property
    def status(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def next_attempt_at(self) -> datetime: ...
    @property
    def attempts(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...


def waits_on_callback(row: NotificationState, *, due_by: datetime) -> bool:
    """Whether `decide` needs the callback's status: only for a queued reminder that is due."""
    return (
        row.kind == NotificationKind.REMINDER
        and row.status == NotificationStatus.QUEUED
        and row.next_attempt_at <= due_by
    )


def decide(
    row: NotificationState, *, callback_status: str | None, now: datetime, due_by: datetime
) -> Decision:
    """The careful path's answer; for a startable row it is SEND exactly when `due_condition` holds.

    `callback_status` is read only when `waits_on_callback`; None there means no callback.
    """
    if row.status in FINISHED:
        return Decision.FINISHED
    if row.status in STARTABLE and row.next_attempt_at > due_by:
        return Decision.NOT_DUE
    if waits_on_callback(row, due_by=due_by) and callback_status != REMINDER_NEEDS:
        return Decision.UNWANTED
    if row.status == NotificationStatus.SENDING and row.next_attempt_at > now:
        return Decision.HELD
    if row.attempts >= row.max_attempts:
        return Decision.OUT_OF_TRIES
    return Decision.SEND
