"""The agent queue as agents see it: what is overdue, due now and booked for later, with totals.

`POST /v1/queue/claim` hands out one callback; this is the read-only view beside it, in the
order claims take them. `GET /v1/callbacks` lists newest first per status and pages, which
cannot give totals across statuses or the claim order without reading every page.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import repository
from services.callback.reading import to_out
from services.callback.schemas import CallbackOut


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
    # The order `POST /v1/queue/claim` takes them: priority, then `rank_at` (the due time, or
    # when the caller entered the phone queue).
    due: list[CallbackOut]
    # Soonest first.
    later: list[CallbackOut]


async def queue_view(
    *,
    session: AsyncSession,
    now: datetime,
    limit: int,
    queues: tuple[str, ...] | None = None,
) -> QueueView:
    """The first `limit` callbacks of each group and every group's total (of these queues)."""
    totals = await repository.queue_totals(session, now=now, queues=queues)

    async def group(name: repository.ListedGroup) -> list[CallbackOut]:
        rows = await repository.queue_group(
            session, group=name, now=now, limit=limit, queues=queues
        )
        return [to_out(callback) for callback in rows]

    return QueueView(
        as_of=now,
        counts=QueueCounts(**totals),
        overdue=await group("overdue"),
        due=await group("due"),
        later=await group("later"),
    )
