"""History's REST endpoints: thin, the rules live in `service`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, EmailStr
from sqlalchemy.ext.asyncio import AsyncSession

from services.history import erasure, goals, repository, service, stats, stream
from services.history.models import AGENT_ID_MAX_LENGTH
from services.history.queues import QUEUE_KEY_MAX_LENGTH, QueueZones
from services.history.schemas import (
    BatchItemOut,
    BatchOut,
    CustomerPage,
    CustomerProfileOut,
    ErasureOut,
    EventBatchIn,
    EventOut,
    EventPage,
    MergePage,
    StatsOut,
)
from services.history.settings import HistorySettings
from shared.auth import key_still_admits, require_scope
from shared.contracts import Channel, EventIn, EventTypeField
from shared.db import session_dependency, utcnow
from shared.errors import Unprocessable
from shared.jsonutil import ORJSONResponse
from shared.pagination import Cursor, Limit
from shared.query_times import INSTANT_HELP, Instant
from shared.routing import JsonRoute


def _settings(request: Request) -> HistorySettings:
    settings = request.app.state.settings
    assert isinstance(settings, HistorySettings)
    return settings


SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]


async def _read_only(session: SessionDep) -> AsyncSession:
    """The request's session in autocommit, for reads answered by one statement.

    A single statement is its own snapshot, so the transaction around it bought nothing but
    the BEGIN and COMMIT round trips to PostgreSQL.
    """
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


ReadSessionDep = Annotated[AsyncSession, Depends(_read_only, scope="function")]
SettingsDep = Annotated[HistorySettings, Depends(_settings)]
CanWrite = Depends(require_scope("history:write", "internal"))
READ_SCOPES = ("history:read",)
CanRead = Depends(require_scope(*READ_SCOPES))
CanErase = Depends(require_scope("admin"))
CustomerId = Annotated[str, Path(max_length=64)]

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
    customer_id: CustomerId, session: SessionDep, response: Response
) -> CustomerProfileOut:
    profile = await service.customer_profile(session=session, customer_id=customer_id)
    # A merged-away id answers with the survivor; this names the record's canonical address.
    response.headers["Content-Location"] = f"/v1/customers/{profile.id}"
    return profile


@router.get(
    "/customers/{customer_id}/timeline",
    dependencies=[CanRead],
    response_model=EventPage,
    summary="The customer's events, newest first",
)
async def get_timeline(
    customer_id: Annotated[str, Path(max_length=64)],
    session: ReadSessionDep,
    channel: Channel | None = None,
    type_: Annotated[EventTypeField | None, Query(alias="type", max_length=64)] = None,
    before: AwareDatetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    events, next_cursor = await service.timeline(
        session=session,
        customer_id=customer_id,
        channel=channel,
        type_=type_,
        before=before,
        cursor=cursor,
        limit=limit,
    )
    # `EventPage` documents the answer; the page is built as plain JSON values so FastAPI
    # does not validate and serialise a model of every event on the hot path.
    body = {"items": [service.event_json(e) for e in events], "next_cursor": next_cursor}
    return ORJSONResponse(body)


@router.get(
    "/customers/{customer_id}/merges",
    dependencies=[CanRead],
    summary="The customer records merged into this one, newest merge first",
)
async def list_merges(
    customer_id: CustomerId,
    session: ReadSessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> MergePage:
    items, next_cursor = await service.merges(
        session=session, customer_id=customer_id, cursor=cursor, limit=limit
    )
    return MergePage(items=items, next_cursor=next_cursor)


@router.delete(
    "/customers/{customer_id}",
    dependencies=[CanErase],
    summary="Erase the person's data here, in callback and in intake (repeat: same answer)",
)
async def erase_customer(customer_id: CustomerId, session: SessionDep) -> ErasureOut:
    return await erasure.erase_customer(session=session, customer_id=customer_id)


@router.get(
    "/stream",
    dependencies=[CanRead],
    response_class=StreamingResponse,
    summary="Server-Sent Events of the customer's new events, resumable with Last-Event-ID",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    customer_id: Annotated[str, Query(min_length=1, max_length=64)],
    last_event_id: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20)
    ] = None,
) -> StreamingResponse:
    after = last_event_id
    if last_event_id_header:  # the browser's own resume point wins over the URL's
        if not last_event_id_header.isdigit() or int(last_event_id_header) >= 2**63:
            raise Unprocessable(
                "Last-Event-ID is not an event id of this stream.",
                extra={"errors": [{"loc": ["header", "Last-Event-ID"], "msg": "not an id"}]},
            )
        after = int(last_event_id_header)
    customer = await service.live_customer(session=session, customer_id=customer_id)
    if after is None:  # a new stream: only what comes from now on
        after = await repository.last_seq(session, customer.id)
    body = stream.stream_events(
        sessions=request.app.state.session_factory,
        broadcaster=request.app.state.broadcaster,
        settings=settings,
        customer_id=customer.id,
        after_seq=after,
        still_admitted=key_still_admits(request, *READ_SCOPES),
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/stats",
    dependencies=[CanRead],
    summary="Contacts, missed calls, callbacks, time to reach, SLA share and demand, "
    "of all queues or one queue, of all agents or one agent",
)
async def get_stats(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    from_: Annotated[
        Instant | None,
        Query(
            alias="from",
            description=f"start of the range, {INSTANT_HELP}; "
            "default: today's local midnight (the queue's zone with `queue`, else the site's)",
        ),
    ] = None,
    to: Annotated[
        Instant | None,
        Query(description="end of the range (not included); default: the next local midnight"),
    ] = None,
    bucket: Literal["hour", "day"] = "day",
    queue: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=QUEUE_KEY_MAX_LENGTH,
            description="only this queue's figures, in the queue's time zone",
        ),
    ] = None,
    agent_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=AGENT_ID_MAX_LENGTH,
            description="only the callbacks this agent closed",
        ),
    ] = None,
) -> StatsOut:
    only = repository.StatsFilter(queue=queue, agent_id=agent_id)
    if from_ is not None and to is not None:
        # Refused before callback is asked for a zone these figures will never use.
        stats.check_range(from_, to, bucket)
    stats.check_filter(only)
    # One queue's figures use its zone, callback's to tell (the site's if it can't); figures
    # across queues use the site zone (DESIGN §9).
    timezone = settings.site_timezone
    queue_goals = goals.NO_GOALS  # across queues there is no goal: each queue has its own
    if queue is not None:
        zones = request.app.state.queue_zones
        assert isinstance(zones, QueueZones)
        facts = await zones.facts_of(queue)
        timezone, queue_goals = facts.zone, goals.goals_in(facts.goals)
    start, end = stats.period(from_, to, timezone=timezone, now=utcnow())
    return await stats.statistics(
        session=session,
        start=start,
        end=end,
        bucket=bucket,
        timezone=timezone,
        only=only,
        goals=queue_goals,
    )
