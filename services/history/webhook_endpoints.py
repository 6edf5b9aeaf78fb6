"""Webhook endpoints (DESIGN §12): create, list, change, delete, rotate, and the delivery log."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.history import webhook_delivery
from services.history.event_names import ALL_EVENTS
from services.history.models import WebhookDelivery, WebhookEndpoint
from services.history.settings import HistorySettings
from services.history.url_safety import URL_MAX_LENGTH, UnsafeUrl, check_url
from services.history.webhook_signing import new_secret
from shared.apikeys import Principal
from shared.auth import require_scope
from shared.db import session_dependency, utcnow
from shared.errors import BadRequest, Conflict, NotFound, Unprocessable
from shared.ids import new_id
from shared.jsonutil import dumps
from shared.pagination import Cursor, Limit, Page, page_of, read_cursor, row_id, sequence_number
from shared.routing import JsonRoute
from shared.vocabulary import OutboxRowStatus, WebhookEventType

MAX_FILTERS = len(WebhookEventType)
# Every event is written once per subscribed endpoint, in the request that records it: the
# number of endpoints is a ceiling on that fan-out.
MAX_ENDPOINTS = 50
# The advisory lock that serialises endpoint creation (an arbitrary, fixed 64-bit key).
_CREATE_LOCK = 0x52424B5745424831
_KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,200}$")

EventFilter = Annotated[list[str], Field(min_length=1, max_length=MAX_FILTERS)]
Url = Annotated[str, Field(min_length=1, max_length=URL_MAX_LENGTH)]
Description = Annotated[str, Field(max_length=500)]


def _check_filters(events: list[str]) -> list[str]:
    names = set(WebhookEventType)
    unknown = [name for name in events if name != ALL_EVENTS and name not in names]
    if unknown:
        raise ValueError(f"unknown event names: {', '.join(sorted(unknown))[:300]}")
    if ALL_EVENTS in events and len(events) > 1:
        raise ValueError('"*" stands alone: it already means every event')
    return list(dict.fromkeys(events))


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    events: EventFilter
    description: Description | None = None

    _filters = field_validator("events")(_check_filters)


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    events: EventFilter | None = None
    description: Description | None = None
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _filters(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else _check_filters(events)


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    # Why ringback turned it off by itself (`gone`, `failing`); none when it is on.
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = None
    created_at: datetime
    updated_at: datetime


class CreatedEndpointOut(EndpointOut):
    """The creation's answer: the only one that shows the secret."""

    secret: str


class RotatedSecretOut(BaseModel):
    id: str
    secret: str
    # The old secret signs too until then (both signatures are sent).
    previous_secret_expires_at: datetime


class EndpointPage(Page[EndpointOut]):
    pass


class DeliveryOut(BaseModel):
    id: int
    message_id: str
    event_type: str
    event_id: str | None
    status: OutboxRowStatus
    attempts: int
    last_status_code: int | None
    last_attempt_at: datetime | None
    # When the next try is due, while the delivery is pending.
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(Page[DeliveryOut]):
    pass


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        failing_since=endpoint.failing_since,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    if row.delivered_at is not None:
        status = OutboxRowStatus.DELIVERED
    elif row.dead_at is not None:
        status = OutboxRowStatus.DEAD
    else:
        status = OutboxRowStatus.PENDING
    return DeliveryOut(
        id=row.id,
        message_id=row.message_id,
        event_type=row.path,
        event_id=row.event_id,
        status=status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.available_at if status is OutboxRowStatus.PENDING else None,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


async def _checked(url: str, settings: HistorySettings) -> str:
    try:
        await check_url(
            url,
            require_https=settings.environment == "production",
            allow_private=settings.webhook_allow_private,
        )
    except UnsafeUrl as exc:
        raise Unprocessable(
            str(exc),
            slug="webhook-url-refused",
            extra={"errors": [{"loc": ["body", "url"], "msg": str(exc)}]},
        ) from None
    return url


# The service: module functions the routes and the CLI both call. They flush, never commit.


async def create_endpoint(
    *,
    session: AsyncSession,
    settings: HistorySettings,
    body: EndpointIn,
    idempotency_key: str | None = None,
) -> tuple[CreatedEndpointOut, bool]:
    """A new endpoint with a fresh secret; a repeat of the Idempotency-Key answers the first
    (and False)."""
    fingerprint = hashlib.sha256(dumps(body.model_dump())).hexdigest()
    # Creates are rare: one at a time, so two racing under the same Idempotency-Key answer
    # the same endpoint, and the count below cannot be overtaken.
    await session.execute(select(func.pg_advisory_xact_lock(_CREATE_LOCK)))
    if idempotency_key is not None:
        earlier = await session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.idempotency_key == idempotency_key)
        )
        if earlier is not None:
            if earlier.request_sha256 != fingerprint:
                raise Unprocessable(
                    "This Idempotency-Key was used with a different request body.",
                    slug="idempotency-key-reused",
                )
            return _created(earlier), False
    url = await _checked(body.url, settings)
    count = await session.scalar(select(func.count()).select_from(WebhookEndpoint))
    if (count or 0) >= MAX_ENDPOINTS:
        raise Conflict(
            f"There are {MAX_ENDPOINTS} webhook endpoints already: delete one first.",
            slug="too-many-webhook-endpoints",
        )
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=new_id(),
        url=url,
        description=body.description,
        events=body.events,
        secret=new_secret(),
        enabled=True,
        idempotency_key=idempotency_key,
        request_sha256=fingerprint,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.flush()
    return _created(endpoint), True


def _created(endpoint: WebhookEndpoint) -> CreatedEndpointOut:
    return CreatedEndpointOut(**endpoint_out(endpoint).model_dump(), secret=endpoint.secret)


async def get_endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("No webhook endpoint has this id.")
    return endpoint


async def list_endpoints(
    *, session: AsyncSession, limit: int = 50, cursor: str | None = None
) -> EndpointPage:
    """Endpoints oldest first (ids are UUIDv7, so id order is creation order)."""
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id).limit(limit + 1)
    if cursor is not None:
        (after,) = read_cursor(cursor, row_id)
        query = query.where(WebhookEndpoint.id > after)
    rows = list((await session.scalars(query)).all())
    items, next_cursor = page_of(rows, limit, lambda row: (row.id,))
    return EndpointPage(items=[endpoint_out(row) for row in items], next_cursor=next_cursor)


async def update_endpoint(
    *, session: AsyncSession, settings: HistorySettings, endpoint_id: str, patch: EndpointPatch
) -> EndpointOut:
    """Change url, events, description or enabled; turning it on clears why it was off."""
    endpoint = await get_endpoint(session, endpoint_id)
    if patch.url is not None and patch.url != endpoint.url:
        endpoint.url = await _checked(patch.url, settings)
    if patch.events is not None:
        endpoint.events = patch.events
    if "description" in patch.model_fields_set:
        endpoint.description = patch.description
    if patch.enabled is not None and patch.enabled != endpoint.enabled:
        endpoint.enabled = patch.enabled
        endpoint.disabled_reason = None
        endpoint.disabled_at = None if patch.enabled else utcnow()
        endpoint.failing_since = None
    endpoint.updated_at = utcnow()
    await session.flush()
    return endpoint_out(endpoint)


async def rotate_secret(*, session: AsyncSession, endpoint_id: str) -> RotatedSecretOut:
    """A new secret; the current one keeps signing too for `ROTATION_OVERLAP`."""
    endpoint = await get_endpoint(session, endpoint_id)
    now = utcnow()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + webhook_delivery.ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.flush()
    return RotatedSecretOut(
        id=endpoint.id,
        secret=endpoint.secret,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


async def delete_endpoint(*, session: AsyncSession, endpoint_id: str) -> None:
    """The endpoint and its delivery log; nothing more is sent to it."""
    result = await session.execute(
        delete(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .returning(WebhookEndpoint.id)
    )
    if result.first() is None:
        raise NotFound("No webhook endpoint has this id.")


async def list_deliveries(
    *, session: AsyncSession, endpoint_id: str, limit: int = 50, cursor: str | None = None
) -> DeliveryPage:
    """An endpoint's deliveries, newest first."""
    await get_endpoint(session, endpoint_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        (before,) = read_cursor(cursor, sequence_number)
        query = query.where(WebhookDelivery.id < before)
    rows = list((await session.scalars(query)).all())
    items, next_cursor = page_of(rows, limit, lambda row: (row.id,))
    return DeliveryPage(items=[delivery_out(row) for row in items], next_cursor=next_cursor)


async def replay_delivery(
    *, session: AsyncSession, endpoint_id: str, delivery_id: int
) -> DeliveryOut:
    """Send one delivery again, same body and `webhook-id`, tries counted afresh."""
    await get_endpoint(session, endpoint_id)
    if not await webhook_delivery.replay(session, endpoint_id=endpoint_id, delivery_id=delivery_id):
        raise NotFound("This endpoint has no delivery with this id.")
    row = await session.get(WebhookDelivery, delivery_id, populate_existing=True)
    assert row is not None
    return delivery_out(row)


# The routes: thin, scope `admin` (an endpoint receives every customer's events).


def _settings(request: Request) -> HistorySettings:
    settings = request.app.state.settings
    assert isinstance(settings, HistorySettings)
    return settings


SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
SettingsDep = Annotated[HistorySettings, Depends(_settings)]
AdminDep = Annotated[Principal, Depends(require_scope("admin"))]
EndpointId = Annotated[str, Path(max_length=36)]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]

webhook_router = APIRouter(prefix="/v1/webhook-endpoints", route_class=JsonRoute, tags=["webhooks"])


@webhook_router.post(
    "",
    status_code=201,
    responses={200: {"model": CreatedEndpointOut, "description": "A repeat: the first result"}},
    summary="Create a webhook endpoint; its secret is shown in this answer only",
)
async def post_endpoint(
    body: EndpointIn,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> CreatedEndpointOut:
    if idempotency_key is not None and not _KEY_CHARS.match(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1-200 visible ASCII characters.")
    scoped = f"{principal.key_id}:{idempotency_key}" if idempotency_key else None
    created, new = await create_endpoint(
        session=session, settings=settings, body=body, idempotency_key=scoped
    )
    if not new:
        response.status_code = 200
    return created


@webhook_router.get("", summary="Webhook endpoints, oldest first")
async def get_endpoints(
    session: SessionDep, _: AdminDep, limit: Limit = 50, cursor: Cursor = None
) -> EndpointPage:
    return await list_endpoints(session=session, limit=limit, cursor=cursor)


@webhook_router.get("/{endpoint_id}", summary="One webhook endpoint (never its secret)")
async def get_one_endpoint(
    endpoint_id: EndpointId, session: SessionDep, _: AdminDep
) -> EndpointOut:
    return endpoint_out(await get_endpoint(session, endpoint_id))


@webhook_router.patch("/{endpoint_id}", summary="Change url, events, description or enabled")
async def patch_endpoint(
    endpoint_id: EndpointId,
    patch: EndpointPatch,
    session: SessionDep,
    settings: SettingsDep,
    _: AdminDep,
) -> EndpointOut:
    return await update_endpoint(
        session=session, settings=settings, endpoint_id=endpoint_id, patch=patch
    )


@webhook_router.delete(
    "/{endpoint_id}", status_code=204, summary="Delete an endpoint and its delivery log"
)
async def remove_endpoint(endpoint_id: EndpointId, session: SessionDep, _: AdminDep) -> Response:
    await delete_endpoint(session=session, endpoint_id=endpoint_id)
    return Response(status_code=204)


@webhook_router.post(
    "/{endpoint_id}/rotate-secret",
    summary="A new secret; the old one signs too for 24 hours",
)
async def post_rotate_secret(
    endpoint_id: EndpointId, session: SessionDep, _: AdminDep
) -> RotatedSecretOut:
    return await rotate_secret(session=session, endpoint_id=endpoint_id)


@webhook_router.get("/{endpoint_id}/deliveries", summary="The endpoint's deliveries, newest first")
async def get_deliveries(
    endpoint_id: EndpointId,
    session: SessionDep,
    _: AdminDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeliveryPage:
    return await list_deliveries(
        session=session, endpoint_id=endpoint_id, limit=limit, cursor=cursor
    )


@webhook_router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    summary="Send one delivery again (same body, same webhook-id)",
)
async def post_replay(
    endpoint_id: EndpointId, delivery_id: DeliveryId, session: SessionDep, _: AdminDep
) -> DeliveryOut:
    return await replay_delivery(session=session, endpoint_id=endpoint_id, delivery_id=delivery_id)
