"""The agent queue as agents see it: what is overdue, due now and booked for later, with totals.

`POST /v1/queue/claim` hands out one callback; this is the read-only view beside it, in the
order claims take them. `GET /v1/callbacks` lists newest first per status and pages, which
cannot give totals across statuses or the claim order without reading every page.

Its SQL lives here rather than in `repository` because it is one read shaped for one endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback.models import OPEN_STATUSES, Callback
from services.callback.schemas import CallbackOut
from services.callback.service import to_out


class QueueCounts(BaseModel):
    """Totals of the groups below (the lists stop at `limit`), and claims being worked."""

    overdue: int = Field(description="Waiting for an agent past the SLA deadline")
    due: int = Field(description="Claimable now and still within the SLA deadline")
    later: int = Field(description="Waiting, not due yet (a booked slot or a retry time)")
    in_progress: int = Field(description="Held by an agent whose claim is still running")


class QueueView(BaseModel):
    """The queue at `as_of`. Each callback appears in one group at most."""

    as_of: datetime
    counts: QueueCounts
    # Oldest deadline first; some may not be due yet (a retry after the deadline).
    overdue: list[CallbackOut]
    # The order `POST /v1/queue/claim` takes them: priority, then due time.
    due: list[CallbackOut]
    # Soonest first.
    later: list[CallbackOut]


def _groups(now: datetime) -> dict[str, ColumnElement[bool]]:
    waiting = Callback.status.in_(("pending", "scheduled"))
    # A claim whose lease ran out is back in the queue for the next claim (as `claim_next`).
    lapsed = and_(Callback.status == "in_progress", Callback.lease_expires_at <= now)
    unheld = or_(waiting, lapsed)
    claimable = or_(and_(waiting, Callback.due_at <= now), lapsed)
    within_sla = Callback.sla_deadline > now
    return {
        "overdue": and_(unheld, Callback.sla_deadline <= now),
        "due": and_(claimable, within_sla),
        "later": and_(waiting, Callback.due_at > now, within_sla),
        "in_progress": and_(Callback.status == "in_progress", Callback.lease_expires_at > now),
    }


async def queue_view(*, session: AsyncSession, now: datetime, limit: int) -> QueueView:
    """The first `limit` callbacks of each group and every group's total."""
    groups = _groups(now)
    is_open = Callback.status.in_(OPEN_STATUSES)
    totals = (
        await session.execute(
            select(*(func.count().filter(cond).label(name) for name, cond in groups.items()))
            .select_from(Callback)
            .where(is_open)
        )
    ).one()
    orders: dict[str, Sequence[Any]] = {
        "overdue": (Callback.sla_deadline, Callback.id),
        "due": (Callback.priority.desc(), Callback.due_at, Callback.id),
        "later": (Callback.due_at, Callback.id),
    }
    lists: dict[str, list[CallbackOut]] = {}
    for name, order in orders.items():
        rows = await session.scalars(
            select(Callback).where(is_open, groups[name]).order_by(*order).limit(limit)
        )
        lists[name] = [to_out(callback) for callback in rows]
    return QueueView(
        as_of=now,
        counts=QueueCounts(**totals._asdict()),
        overdue=lists["overdue"],
        due=lists["due"],
        later=lists["later"],
    )
