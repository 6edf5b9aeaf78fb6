"""History's REST endpoints: thin, the rules live in `service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AwareDatetime, EmailStr
from sqlalchemy.ext.asyncio import AsyncSession

from services.history import service
from services.history.schemas import (
    BatchItemOut,
    BatchOut,
    CustomerPage,
    CustomerProfileOut,
    EventBatchIn,
    EventOut,
    EventPage,
)
from services.history.settings import HistorySettings
from shared.auth import require_scope
from shared.contracts import Channel, EventIn, EventType
from shared.db import session_dependency
from shared.errors import Unprocessable
from shared.routing import JsonRoute


def _settings(request: Request) -> HistorySettings:
    settings = request.app.state.settings
    assert isinstance(settings, HistorySettings)
    return settings


SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
SettingsDep = Annotated[HistorySettings, Depends(_settings)]
CanWrite = Depends(require_scope("history:write", "internal"))
CanRead = Depends(require_scope("history:read"))

router = APIRouter(prefix="/v1", route_class=JsonRoute, tags=["history"])


@router.post(
    "/events",
    status_code=201,
    dependencies=[CanWrite],
    responses={200: {"model": EventOut, "description": "Already stored: the first result"}},
    summary="Record one event (idempotent on its id)",
)
async def post_event(
    event: EventIn, response: Response, session: SessionDep, settings: SettingsDep
) -> EventOut:
    service.check_storable([event], batch=False)
    recorded = await service.record_event(
        session=session, event=event, region=settings.default_region
    )
    if not recorded.created:
        response.status_code = 200
    return service.event_out(recorded.event)


@router.post(
    "/events:batch",
    dependencies=[CanWrite],
    summary="Record up to 500 events; per-item results in the order sent",
)
async def post_events_batch(
    body: EventBatchIn, session: SessionDep, settings: SettingsDep
) -> BatchOut:
    service.check_storable(body.events, batch=True)
    recorded = await service.record_events(
        session=session, events=body.events, region=settings.default_region
    )
    return BatchOut(
        items=[
            BatchItemOut(
                id=item.event.id,
                status="created" if item.created else "duplicate",
                event=service.event_out(item.event),
            )
            for item in recorded
        ]
    )


@router.get(
    "/customers",
    dependencies=[CanRead],
    summary="Find customers by phone number (any notation) or email",
)
async def list_customers(
    session: SessionDep,
    settings: SettingsDep,
    phone: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    email: Annotated[EmailStr | None, Query(max_length=254)] = None,
) -> CustomerPage:
    if phone is None and email is None:
        raise Unprocessable(
            "Give a phone number or an email to look customers up by.",
            extra={"errors": [{"loc": ["query"], "msg": "phone or email is required"}]},
        )
    items = await service.find_customers(
        session=session, phone=phone, email=email, region=settings.default_region
    )
    return CustomerPage(items=items, next_cursor=None)


@router.get(
    "/customers/{customer_id}",
    dependencies=[CanRead],
    summary="The customer's profile and where their case stands",
)
async def get_customer(
    customer_id: Annotated[str, Path(max_length=64)], session: SessionDep, response: Response
) -> CustomerProfileOut:
    profile = await service.customer_profile(session=session, customer_id=customer_id)
    # A merged-away id answers with the survivor; this names the record's canonical address.
    response.headers["Content-Location"] = f"/v1/customers/{profile.id}"
    return profile


@router.get(
    "/customers/{customer_id}/timeline",
    dependencies=[CanRead],
    summary="The customer's events, newest first",
)
async def get_timeline(
    customer_id: Annotated[str, Path(max_length=64)],
    session: SessionDep,
    channel: Channel | None = None,
    type_: Annotated[EventType | None, Query(alias="type", max_length=64)] = None,
    before: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EventPage:
    events, next_cursor = await service.timeline(
        session=session,
        customer_id=customer_id,
        channel=channel,
        type_=type_,
        before=before,
        cursor=cursor,
        limit=limit,
    )
    return EventPage(items=[service.event_out(e) for e in events], next_cursor=next_cursor)
