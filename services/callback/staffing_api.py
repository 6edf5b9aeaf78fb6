"""`GET /v1/queues/{key}/staffing` (§14): the staffing table, and promises at risk now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.callback import forecast, promises, staffing
from services.callback.api import QueueKey, SessionDep, SettingsDep
from shared.auth import require_scope
from shared.db import utcnow
from shared.query_times import INSTANT_HELP, Instant
from shared.routing import JsonRoute

router = APIRouter(prefix="/v1/queues", tags=["staffing"], route_class=JsonRoute)


@router.get(
    "/{key}/staffing",
    summary="Agents needed per hour from observed demand, beside the plan; promises at risk",
    dependencies=[Depends(require_scope("callbacks:read"))],
)
async def get_staffing(
    key: QueueKey,
    session: SessionDep,
    settings: SettingsDep,
    start: Annotated[Instant | None, Query(alias="from", description=INSTANT_HELP)] = None,
    end: Annotated[Instant | None, Query(alias="to", description=INSTANT_HELP)] = None,
    weeks: Annotated[int, Query(ge=1, le=52)] = forecast.WEEKS,
    now: Annotated[bool, Query(description="add promises at risk in the next 2 hours")] = False,
) -> staffing.StaffingOut:
    moment = utcnow()
    table = await staffing.staffing(
        session=session,
        settings=settings,
        key=key,
        start=start,
        end=end,
        now=moment,
        weeks=weeks,
    )
    if now:
        table.now = await promises.now_view(session=session, settings=settings, key=key, now=moment)
    return table
