"""Callback's REST API: thin routers over the topic modules (creation, booking, agents, ...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import (
    agents,
    booking,
    cancellation,
    changes,
    creation,
    dialing,
    do_not_call,
    erasure,
    inbound,
    notify,
    queue_view,
    queues,
    reading,
    roster,
    selfservice_actions,
    wrap_up,
)
from services.callback.capacity import CapacityPlan
from services.callback.jobs import ArqNotificationQueue
from services.callback.schemas import (
    AcknowledgementResult,
    AgentIn,
    AnsweredCallResult,
    AttemptIn,
    AttemptOut,
    AttemptPatch,
    AttemptResult,
    BookIn,
    CallbackBatchIn,
    CallbackBatchItem,
    CallbackBatchOut,
    CallbackCreated,
    CallbackDetail,
    CallbackList,
    CallbackOut,
    CancelIn,
    DialIn,
    DialOut,
    DialStarted,
    DoNotCallOut,
    ErasureResult,
    KeyOut,
    NotificationList,
    NotificationOut,
    SelfServiceAction,
    SelfServiceView,
    SlotList,
)
from services.callback.selfservice_page import SelfServiceRoute
from services.callback.settings import CallbackSettings
from shared import ratelimit
from shared.apikeys import Principal
from shared.auth import INTERNAL_KEY_ID, acting_agent, require_scope
from shared.contracts import (
    Acknowledgement,
    AnsweredCall,
    CallbackCreate,
    DialBridge,
    DialEvent,
    ErasureRequest,
    Language,
)
from shared.db import session_dependency, utcnow
from shared.pagination import Cursor, Limit
from shared.query_times import INSTANT_HELP, Instant
from shared.routing import JsonRoute
from shared.vocabulary import CallbackStatus, DialStatus, NotificationStatus


def _settings(request: Request) -> CallbackSettings:
    settings = request.app.state.settings
    assert isinstance(settings, CallbackSettings)
    return settings


def _queue(request: Request) -> ArqNotificationQueue:
    return ArqNotificationQueue(request.app.state.redis)


# The session commits before the response is sent, so a failed commit is a visible error.
SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
SettingsDep = Annotated[CallbackSettings, Depends(_settings)]
QueueDep = Annotated[ArqNotificationQueue, Depends(_queue)]
CallbackId = Annotated[str, Path(max_length=64)]
QueueKeyQuery = Annotated[str | None, Query(max_length=40)]
QueueKey = Annotated[str, Path(pattern=queues.KEY_PATTERN)]
AgentKey = Annotated[str, Path(max_length=64)]


@dataclass(frozen=True, slots=True)
class Work:
    """What a changing endpoint works with: the request's session, the settings, the job queue."""

    session: AsyncSession
    settings: CallbackSettings
    queue: ArqNotificationQueue


def _work(session: SessionDep, settings: SettingsDep, queue: QueueDep) -> Work:
    return Work(session=session, settings=settings, queue=queue)


WorkDep = Annotated[Work, Depends(_work)]

_may_write = require_scope("callbacks:write", "internal")
_READ = [Depends(require_scope("callbacks:read", "internal"))]
# The same callable as the endpoints' `Writer` below, so FastAPI checks the key once.
_WRITE = [Depends(_may_write)]
Writer = Annotated[Principal, Depends(_may_write)]


def _acts_as(
    principal: Principal,
    named: str | None,
    *,
    required: bool = True,
    loc: tuple[str, str] = ("body", "agent_id"),
) -> str | None:
    """The agent an action is recorded under (§9): a bound key's own agent, 403 for another.

    Booking and cancelling never needed an agent id; with an unbound key they still do not.
    """
    if not required and named is None and principal.agent_id is None:
        return None
    return acting_agent(principal, named, loc=loc)


def _actor(agent_id: str | None) -> dict[str, Any]:
    return {"kind": "agent", **({"id": agent_id} if agent_id else {})}


async def _sends_within_ceiling(
    request: Request, principal: Annotated[Principal, Depends(_may_write)]
) -> None:
    """A key that makes us send (a callback confirms, an acknowledgement mails) is capped.

    The internal key is not: the intake relay forwards every customer's contact with it, and
    intake has capped those per number, address, IP and key already.
    """
    if principal.key_id == INTERNAL_KEY_ID:
        return
    settings = _settings(request)
    # Key ids are not personal data; the keyed hash only keeps Redis keys one shape.
    limiter = ratelimit.RateLimiter(
        request.app.state.redis, window_seconds=3600, secret=b"callback.sends"
    )
    await limiter.hit(
        [ratelimit.Limit("api_key", principal.key_id, settings.sends_per_api_key_per_hour)],
        what="callbacks and acknowledgements",
    )


_SENDS = [Depends(_sends_within_ceiling)]
_ADMIN = [Depends(require_scope("admin"))]

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"], route_class=JsonRoute)

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _changes_callback(
    path: str, *, summary: str, conflict: str, **route: Any
) -> Callable[[Endpoint], Endpoint]:
    """A POST that moves one callback on and answers with it; 409 (`conflict`) when it may not."""
    return router.post(
        path,
        summary=summary,
        responses={409: {"description": conflict}},
        dependencies=_WRITE,
        **route,
    )


@router.post(
    "",
    status_code=201,
    summary="Create a callback, or attach the contact to the number's open one",
    responses={
        200: {"model": CallbackCreated, "description": "Merged, or a repeated request"},
        202: {"model": CallbackCreated, "description": "On the do-not-call list: no callback"},
        429: {"description": "This key made too many this hour"},
    },
    dependencies=_SENDS,
)
async def create_callback(
    body: CallbackCreate, response: Response, work: WorkDep
) -> CallbackCreated:
    outcome = await creation.create_callback(
        session=work.session, settings=work.settings, data=body, queue=work.queue
    )
    response.status_code = outcome.status_code
    return outcome.result


@router.post(
    ":batch",
    summary="Create up to 100 callbacks as `POST /v1/callbacks` would, each on its own",
    description=(
        "For intake's relay (the internal key only: every item may send a confirmation, and "
        "other keys' sends are counted one request at a time). Items are made in order, each "
        "in a transaction of its own; 200 lists what each alone would have answered. A refused "
        "item stops the batch with its own problem, located at `body.callbacks[i]`: the items "
        "before it are made (`made`), and sending the batch again replays them."
    ),
    dependencies=[Depends(require_scope("internal"))],
)
async def create_callbacks(
    body: CallbackBatchIn, request: Request, settings: SettingsDep, queue: QueueDep
) -> CallbackBatchOut:
    outcomes = await creation.create_batch(
        sessions=request.app.state.session_factory,
        settings=settings,
        items=body.callbacks,
        queue=queue,
    )
    return CallbackBatchOut(
        items=[
            CallbackBatchItem(
                request_id=item.request_id, code=outcome.status_code, callback=outcome.result
            )
            for item, outcome in zip(body.callbacks, outcomes, strict=True)
        ]
    )


@router.get("", summary="List callbacks, newest first", dependencies=_READ)
async def list_callbacks(
    session: SessionDep,
    settings: SettingsDep,
    status: CallbackStatus | None = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    queue: QueueKeyQuery = None,
    due_before: datetime | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CallbackList:
    return await reading.list_callbacks(
        session=session,
        settings=settings,
        status=status,
        phone=phone,
        agent_id=agent_id,
        queue=queue,
        due_before=due_before,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/{callback_id}",
    summary="One callback with its attempts and notifications",
    dependencies=_READ,
)
async def get_callback(callback_id: CallbackId, session: SessionDep) -> CallbackDetail:
    return await reading.get_callback(session=session, callback_id=callback_id)


@router.patch(
    "/{callback_id}",
    summary="Change priority or owner, or move the callback to another queue (SLA kept)",
    responses={409: {"description": "Closed, being worked, or already open in that queue"}},
    dependencies=_WRITE,
)
async def patch_callback(
    callback_id: CallbackId, body: changes.CallbackPatch, work: WorkDep, principal: Writer
) -> CallbackOut:
    callback = await changes.patch(
        session=work.session,
        settings=work.settings,
        callback_id=callback_id,
        body=body,
        actor=_actor(principal.agent_id),
    )
    return reading.to_out(callback)


@_changes_callback(
    "/{callback_id}/book",
    summary="Book (or rebook) the callback into a slot; the old seat is given back",
    conflict="Slot full, or the callback is closed",
)
async def book_callback(
    callback_id: CallbackId, body: BookIn, work: WorkDep, principal: Writer
) -> CallbackOut:
    agent = _acts_as(principal, body.agent_id, required=False)
    callback = await booking.book(
        session=work.session,
        settings=work.settings,
        queue=work.queue,
        callback_id=callback_id,
        slot_ref_in=body.slot_id,
        actor=_actor(agent),
    )
    return reading.to_out(callback)


@_changes_callback(
    "/{callback_id}/cancel",
    summary="Cancel an open callback",
    conflict="The callback is already closed",
)
async def cancel_callback(
    callback_id: CallbackId, work: WorkDep, principal: Writer, body: CancelIn | None = None
) -> CallbackOut:
    agent = _acts_as(principal, body.agent_id if body else None, required=False)
    callback = await cancellation.cancel(
        session=work.session,
        settings=work.settings,
        queue=work.queue,
        callback_id=callback_id,
        by="agent",
        notify_customer=body.notify if body else True,
        actor=_actor(agent),
    )
    return reading.to_out(callback)


@_changes_callback(
    "/{callback_id}/lease",
    summary="Renew the claim on a callback",
    conflict="This agent does not hold the claim",
)
async def renew_lease(
    callback_id: CallbackId, body: AgentIn, work: WorkDep, principal: Writer
) -> CallbackOut:
    agent = _acts_as(principal, body.agent_id)
    assert agent is not None
    callback = await agents.renew_lease(
        session=work.session,
        settings=work.settings,
        callback_id=callback_id,
        agent_id=agent,
    )
    return reading.to_out(callback)


@_changes_callback(
    "/{callback_id}/attempts",
    summary="Record a try to reach the customer",
    conflict="This agent does not hold the claim",
    status_code=201,
)
async def record_attempt(
    callback_id: CallbackId, body: AttemptIn, work: WorkDep, principal: Writer
) -> AttemptResult:
    agent = _acts_as(principal, body.agent_id)
    assert agent is not None
    result = await agents.record_attempt(
        session=work.session,
        settings=work.settings,
        queue=work.queue,
        callback_id=callback_id,
        agent_id=agent,
        outcome=body.outcome,
        note=body.note,
        next_try=body.next,
        wrap_up_code=body.wrap_up_code,
    )
    return AttemptResult(
        attempt=AttemptOut.model_validate(result.attempt),
        callback=reading.to_out(result.callback),
    )


@router.patch(
    "/{callback_id}/attempts/{attempt_id}",
    summary="Confirm or correct the outcome the line proposed (wrap-up); it then takes effect",
    responses={409: {"description": "Not this agent's claim, or the attempt is final already"}},
    dependencies=_WRITE,
)
async def confirm_attempt(
    callback_id: CallbackId,
    attempt_id: Annotated[str, Path(max_length=64)],
    body: AttemptPatch,
    work: WorkDep,
    principal: Writer,
) -> AttemptResult:
    agent = _acts_as(principal, body.agent_id)
    assert agent is not None
    attempt, callback = await wrap_up.confirm(
        session=work.session,
        settings=work.settings,
        queue=work.queue,
        callback_id=callback_id,
        attempt_id=attempt_id,
        agent_id=agent,
        patch=body,
    )
    return AttemptResult(
        attempt=AttemptOut.model_validate(attempt), callback=reading.to_out(callback)
    )


@router.post(
    "/{callback_id}/dial",
    status_code=202,
    summary="Call the customer through the phone system: the agent's phone rings first",
    responses={
        409: {"description": "Not this agent's claim, a call already running, or a refusal"},
        422: {"description": "A number we do not dial (type or country)"},
        503: {"description": "No dialer is configured"},
    },
    dependencies=_WRITE,
)
async def dial_callback(
    callback_id: CallbackId, body: DialIn, work: WorkDep, principal: Writer
) -> DialStarted:
    agent = _acts_as(principal, body.agent_id)
    assert agent is not None
    dial = await dialing.start(
        session=work.session,
        settings=work.settings,
        queue=work.queue,
        callback_id=callback_id,
        agent_id=agent,
        reason=body.reason,
    )
    return DialStarted(dial_id=dial.id, status=DialStatus(dial.status))


# What the phone system reports, forwarded by intake's relay (§10); the internal key only.
dials_router = APIRouter(
    prefix="/v1/dials",
    tags=["dialing"],
    route_class=JsonRoute,
    dependencies=[Depends(require_scope("internal"))],
)
DialId = Annotated[str, Path(max_length=64)]


@dials_router.post("/{dial_id}/events", summary="A leg's progress, as the phone system told it")
async def dial_event(dial_id: DialId, body: DialEvent, work: WorkDep) -> DialOut:
    dial = await dialing.report(
        session=work.session,
        settings=work.settings,
        queue=work.queue,
        dial_id=dial_id,
        event=body,
    )
    return DialOut.model_validate(dial)


@dials_router.post(
    "/{dial_id}/connect",
    summary="The agent pressed 1: whom to ring, showing which number",
    responses={409: {"description": "The dial ended, or the customer must not be rung now"}},
)
async def dial_connect(dial_id: DialId, work: WorkDep) -> DialBridge:
    return await dialing.connect(session=work.session, settings=work.settings, dial_id=dial_id)


queue_router = APIRouter(prefix="/v1/queue", tags=["queue"], route_class=JsonRoute)


@queue_router.post(
    "/claim",
    summary="Hand the most urgent due callback to this agent",
    responses={204: {"description": "Nothing is due"}},
    response_model=CallbackOut,
    dependencies=_WRITE,
)
async def claim(
    body: AgentIn, session: SessionDep, settings: SettingsDep, principal: Writer
) -> Response | CallbackOut:
    agent = _acts_as(principal, body.agent_id)
    assert agent is not None
    callback = await agents.claim_next(session=session, settings=settings, agent_id=agent)
    if callback is None:
        return Response(status_code=204)
    return reading.to_out(callback)


@queue_router.get(
    "",
    summary="The queue: overdue, due now and later, in claim order, with totals",
    dependencies=_READ,
)
async def view_queue(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # Repeatable: an agent's console asks for all of its queues in one view.
    queue: Annotated[
        list[Annotated[str, Query(max_length=40)]] | None, Query(max_length=100)
    ] = None,
) -> queue_view.QueueView:
    return await queue_view.queue_view(
        session=session, now=utcnow(), limit=limit, queues=tuple(queue) if queue else None
    )


capacity_router = APIRouter(tags=["capacity"], route_class=JsonRoute)


@capacity_router.put(
    "/v1/capacity",
    summary="Replace the default queue's capacity plan (its zone becomes the queue's)",
    dependencies=_ADMIN,
)
async def put_capacity(
    body: CapacityPlan, session: SessionDep, settings: SettingsDep
) -> CapacityPlan:
    return await queues.put_default_plan(session=session, settings=settings, plan=body)


@capacity_router.get(
    "/v1/capacity",
    summary="The capacity plan",
    dependencies=[Depends(require_scope("callbacks:read", "internal"))],
)
async def get_capacity(session: SessionDep, settings: SettingsDep) -> CapacityPlan:
    return await queues.get_plan(session=session, settings=settings)


@capacity_router.get(
    "/v1/slots",
    summary="Slots with capacity, booked and available seats",
    dependencies=[Depends(require_scope("callbacks:read", "intake:write", "internal"))],
)
async def list_slots(
    session: SessionDep,
    settings: SettingsDep,
    start: Annotated[
        Instant | None,
        Query(alias="from", description=f"slots starting from, {INSTANT_HELP}; default: now"),
    ] = None,
    end: Annotated[
        Instant | None,
        Query(
            alias="to",
            description="slots starting before; default: the end of the day after `from`'s, "
            "in the queue's zone (with `from` left out: the end of tomorrow)",
        ),
    ] = None,
    language: Language | None = None,
    queue: Annotated[str, Query(max_length=40)] = queues.DEFAULT,
) -> SlotList:
    return await booking.list_slots(
        session=session,
        settings=settings,
        start=start,
        end=end,
        now=utcnow(),
        language=language or settings.default_language,
        queue=queue,
    )


inbound_router = APIRouter(tags=["inbound"], route_class=JsonRoute)


@inbound_router.post(
    "/v1/answered-calls",
    summary="An answered inbound call: complete the number's open callback",
    dependencies=[Depends(require_scope("internal"))],
)
async def answered_call(
    body: AnsweredCall, session: SessionDep, settings: SettingsDep
) -> AnsweredCallResult:
    return await inbound.answered_call(session=session, settings=settings, data=body)


@inbound_router.post(
    "/v1/acknowledgements",
    status_code=202,
    summary="Email-only contact: send one 'we received your message' email",
    responses={
        200: {"model": AcknowledgementResult, "description": "A repeated request"},
        429: {"description": "This key made too many this hour"},
    },
    dependencies=_SENDS,
)
async def acknowledge(
    body: Acknowledgement, response: Response, work: WorkDep
) -> AcknowledgementResult:
    created, result = await inbound.acknowledge(
        session=work.session, settings=work.settings, data=body, queue=work.queue
    )
    response.status_code = 202 if created else 200
    return result


@inbound_router.post(
    "/v1/erasures",
    summary="Erase a person's data from callback's records",
    dependencies=[Depends(require_scope("internal", "admin"))],
)
async def erase(body: ErasureRequest, session: SessionDep, settings: SettingsDep) -> ErasureResult:
    return await erasure.erase(session=session, settings=settings, data=body)


admin_router = APIRouter(tags=["admin"], route_class=JsonRoute)


@admin_router.put(
    "/v1/dnc/{phone}",
    summary="Put a number on the do-not-call list (any notation)",
    responses={201: {"model": DoNotCallOut, "description": "Added"}},
    dependencies=_ADMIN,
)
async def add_dnc(
    phone: Annotated[str, Path(max_length=32)],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> DoNotCallOut:
    created, out = await do_not_call.add(session=session, settings=settings, raw_phone=phone)
    response.status_code = 201 if created else 200
    return out


@admin_router.delete(
    "/v1/dnc/{phone}",
    status_code=204,
    summary="Take a number off the do-not-call list",
    dependencies=_ADMIN,
)
async def remove_dnc(
    phone: Annotated[str, Path(max_length=32)], session: SessionDep, settings: SettingsDep
) -> Response:
    await do_not_call.remove(session=session, settings=settings, raw_phone=phone)
    return Response(status_code=204)


@admin_router.get("/v1/notifications", summary="Notifications by status", dependencies=_ADMIN)
async def list_notifications(
    session: SessionDep,
    status: NotificationStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> NotificationList:
    return await reading.list_notifications(
        session=session, status=status, limit=limit, cursor=cursor
    )


@admin_router.post(
    "/v1/notifications/{notification_id}/retry",
    summary="Queue a dead notification again with a fresh budget of tries",
    responses={409: {"description": "Not dead or failed"}},
    dependencies=_ADMIN,
)
async def retry_notification(
    notification_id: Annotated[str, Path(max_length=64)], work: WorkDep
) -> NotificationOut:
    return await notify.retry(
        session=work.session,
        settings=work.settings,
        notification_id=notification_id,
        queue=work.queue,
        now=utcnow(),
    )


# Browsers get the HTML page on the same paths (`selfservice_page`); API clients get JSON.
self_router = APIRouter(prefix="/v1/self", tags=["self-service"], route_class=SelfServiceRoute)


@self_router.get(
    "/{token}",
    summary="The customer's own callback, through their signed link",
    responses={404: {"description": "Not a link of ours"}, 410: {"description": "Expired"}},
)
async def self_view(
    token: Annotated[str, Path(max_length=512)],
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    lang: Language | None = None,
) -> SelfServiceView:
    _private(response)
    # `?lang=` as on the page; without it, the callback's own language.
    return await selfservice_actions.self_view(
        session=session, settings=settings, token=token, language=lang
    )


@self_router.post(
    "/{token}",
    summary="Cancel or rebook through the signed link",
    responses={404: {"description": "Not a link of ours"}, 410: {"description": "Expired"}},
)
async def self_act(
    token: Annotated[str, Path(max_length=512)],
    body: SelfServiceAction,
    work: WorkDep,
    response: Response,
) -> SelfServiceView:
    _private(response)
    return await selfservice_actions.self_act(
        session=work.session,
        settings=work.settings,
        token=token,
        action=body.action,
        slot_id_in=body.slot_id,
        queue=work.queue,
    )


def _private(response: Response) -> None:
    # One customer's callback, through a link that is the only key to it: no cache may keep
    # it (as the HTML page), and no Referer may carry the link to another site.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"


# --- queues and agents (§9) ----------------------------------------------------------------

queues_router = APIRouter(prefix="/v1/queues", tags=["queues"], route_class=JsonRoute)
_READ_CONFIG = [Depends(require_scope("callbacks:read", "internal"))]


@queues_router.put(
    "/{key}",
    summary="Create or replace a queue (idempotent)",
    responses={201: {"description": "Created"}},
    dependencies=_ADMIN,
)
async def put_queue(
    key: QueueKey,
    body: queues.QueueIn,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> queues.QueueOut:
    created, out = await queues.put_queue(session=session, settings=settings, key=key, body=body)
    response.status_code = 201 if created else 200
    return out


@queues_router.get("", summary="Every queue", dependencies=_READ_CONFIG)
async def list_queues(session: SessionDep, settings: SettingsDep) -> list[queues.QueueOut]:
    return await queues.list_queues(session=session, settings=settings)


@queues_router.get("/{key}", summary="One queue", dependencies=_READ_CONFIG)
async def get_queue(key: QueueKey, session: SessionDep, settings: SettingsDep) -> queues.QueueOut:
    return await queues.get_queue(session=session, settings=settings, key=key)


@queues_router.delete(
    "/{key}",
    status_code=204,
    summary="Delete a queue without open callbacks (never `default`)",
    responses={409: {"description": "It has open callbacks, or it is `default`"}},
    dependencies=_ADMIN,
)
async def delete_queue(key: QueueKey, session: SessionDep) -> Response:
    await queues.delete_queue(session=session, key=key)
    return Response(status_code=204)


agents_router = APIRouter(prefix="/v1/agents", tags=["agents"], route_class=JsonRoute)


@agents_router.put(
    "/{agent_id}",
    summary="Create or replace an agent: queues, languages, phone, SIP",
    responses={201: {"description": "Created"}},
    dependencies=_ADMIN,
)
async def put_agent(
    agent_id: AgentKey, body: roster.AgentProfile, response: Response, session: SessionDep
) -> roster.AgentProfileOut:
    created, out = await roster.put_agent(session=session, agent_id=agent_id, body=body)
    response.status_code = 201 if created else 200
    return out


@agents_router.get("", summary="Every agent known to the roster", dependencies=_READ_CONFIG)
async def list_agents(session: SessionDep) -> list[roster.AgentProfileOut]:
    return await roster.list_agents(session=session)


@agents_router.get("/{agent_id}", summary="One agent", dependencies=_READ_CONFIG)
async def get_agent(agent_id: AgentKey, session: SessionDep) -> roster.AgentProfileOut:
    return await roster.get_agent(session=session, agent_id=agent_id)


@agents_router.delete(
    "/{agent_id}", status_code=204, summary="Forget an agent", dependencies=_ADMIN
)
async def delete_agent(agent_id: AgentKey, session: SessionDep) -> Response:
    await roster.delete_agent(session=session, agent_id=agent_id)
    return Response(status_code=204)


@agents_router.put(
    "/{agent_id}/presence",
    summary="Available, on a break, wrapping up or offline (by the agent or an admin)",
    dependencies=_WRITE,
)
async def put_presence(
    agent_id: AgentKey, body: roster.PresenceIn, session: SessionDep, principal: Writer
) -> roster.AgentProfileOut:
    _acts_as(principal, agent_id, loc=("path", "agent_id"))
    return await roster.set_presence(session=session, agent_id=agent_id, status=body.status)


me_router = APIRouter(tags=["agents"], route_class=JsonRoute)
_any_key = require_scope("callbacks:read", "callbacks:write", "internal")


@me_router.get(
    "/v1/me",
    summary="The key this request came with: its name, scopes and agent",
    dependencies=[Depends(_any_key)],
)
async def whoami(
    principal: Annotated[Principal, Depends(_any_key)], settings: SettingsDep
) -> KeyOut:
    return KeyOut(
        name=principal.name,
        scopes=sorted(principal.scopes),
        agent_id=principal.agent_id,
        dialer=settings.dialer,
    )


ROUTERS = (
    router,
    dials_router,
    queue_router,
    capacity_router,
    queues_router,
    agents_router,
    me_router,
    inbound_router,
    admin_router,
    self_router,
)
