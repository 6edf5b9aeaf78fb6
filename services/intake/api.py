"""Intake's HTTP surface: thin handlers over `service`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from services.intake import repository, service
from services.intake.metrics import IntakeMetrics
from services.intake.schemas import (
    ContactRequestIn,
    ErasureResult,
    InboundDetail,
    InboundItem,
    ReplayResult,
)
from services.intake.service import RawRequest
from services.intake.settings import IntakeSettings
from services.intake.telephony import REGISTRY
from services.intake.telephony.base import (
    QUEUE_MAX_LENGTH,
    NotConfigured,
    Provider,
    ProviderRequest,
    Unauthenticated,
)
from shared.apikeys import Principal
from shared.auth import require_scope
from shared.contracts import SURVEY_COMMENT_MAX, Accepted, ErasureRequest
from shared.db import commit, session_dependency, unit_of_work
from shared.errors import (
    BadRequest,
    Forbidden,
    MalformedJson,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    validation_errors,
)
from shared.jsonutil import ORJSONResponse, loads
from shared.pagination import Cursor, Limit, Page, page_of, read_cursor, row_id
from shared.ratelimit import Limit as AbuseLimit
from shared.ratelimit import RateLimiter
from shared.routing import JsonRoute, is_json_media_type
from shared.vocabulary import InboundStatus, Language

log = structlog.get_logger("ringback.intake")

SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
AdminDep = Depends(require_scope("admin"))


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


def _metrics(request: Request) -> IntakeMetrics:
    metrics: IntakeMetrics = request.app.state.intake_metrics
    return metrics


# --- webhooks ---------------------------------------------------------------------------

webhooks = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_TITLES = {400: "Bad Request", 415: "Unsupported Media Type", 422: "Unprocessable Content"}


def _webhook_endpoint(provider: Provider[Any]) -> Callable[[Request], Awaitable[Response]]:
    # No session dependency: a stateless provider's delivery is one statement of its own
    # (`service.ingest_stateless`), and only the others open a unit of work.
    async def endpoint(request: Request) -> Response:
        settings = _settings(request)
        metrics = _metrics(request)
        body = await request.body()
        incoming = ProviderRequest(
            body=body,
            content_type=request.headers.get("content-type"),
            headers=request.headers,
            path=request.url.path,
            query=request.url.query,
            path_params={k: str(v) for k, v in request.path_params.items()},
        )
        try:
            delivery_id = provider.authenticate(settings, incoming)
        except NotConfigured as exc:
            metrics.unauthenticated.labels(provider.name).inc()
            raise Forbidden(str(exc)) from None
        except Unauthenticated as exc:
            # Counted and logged, never stored: an unauthenticated body is nobody's word.
            metrics.unauthenticated.labels(provider.name).inc()
            log.warning("intake.webhook.unauthenticated", provider=provider.name, reason=str(exc))
            raise Unauthorized(str(exc)) from None

        raw = RawRequest.capture(body, request.headers, request.url.query)
        accepted: Accepted | None = None
        if provider.stateless:
            accepted = await service.ingest_stateless(
                engine=request.app.state.engine,
                settings=settings,
                provider=provider,
                request=incoming,
                raw=raw,
                delivery_id=delivery_id,
            )
        if accepted is None:
            async with unit_of_work(request.app.state.session_factory) as session:
                try:
                    accepted = await service.ingest(
                        session=session,
                        settings=settings,
                        provider=provider,
                        request=incoming,
                        raw=raw,
                        delivery_id=delivery_id,
                    )
                except service.Rejected as exc:
                    # Kept before answering: the caller's bytes survive even though we say no.
                    await commit(session)
                    return _rejected(provider, incoming, exc, metrics)
        metrics.inbound.labels(provider.name, accepted.status).inc()
        log.info(
            "intake.webhook.stored",
            provider=provider.name,
            inbound_id=accepted.id,
            status=accepted.status,
        )
        return provider.respond(incoming, accepted)

    return endpoint


def _rejected(
    provider: Provider[Any],
    incoming: ProviderRequest,
    exc: service.Rejected,
    metrics: IntakeMetrics,
) -> Response:
    metrics.inbound.labels(provider.name, InboundStatus.REJECTED).inc()
    log.info("intake.webhook.rejected", provider=provider.name, inbound_id=exc.inbound_id)
    answer = provider.respond_rejected(incoming, exc.inbound_id)
    if answer is not None:
        return answer
    raise ProblemError(
        exc.error.reason[:1000],
        status=exc.error.status,
        title=_TITLES.get(exc.error.status, "Bad Request"),
        slug="rejected-payload",
        extra={"inbound_id": exc.inbound_id},
    ) from None


def _register(provider: Provider[Any]) -> None:
    extra: dict[str, Any] = {}
    if provider.openapi_body:
        extra["requestBody"] = provider.openapi_body
    names = re.findall(r"{(\w+)}", provider.route)
    parameters: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
    if provider.queue_in_url:
        parameters.append(
            {
                "name": "queue",
                "in": "query",
                "required": False,
                "description": "The queue key of the calls posted here, unless the body names one",
                "schema": {"type": "string", "maxLength": QUEUE_MAX_LENGTH},
            }
        )
    if parameters:
        extra["parameters"] = parameters
    webhooks.add_api_route(
        provider.route,
        _webhook_endpoint(provider),
        methods=["POST"],
        status_code=202,
        response_model=Accepted,
        summary=provider.summary,
        name=f"webhook_{provider.name}",
        openapi_extra=extra or None,
    )


for _provider in REGISTRY.values():
    _register(_provider)


# --- contact requests -------------------------------------------------------------------

contact = APIRouter(prefix="/v1", tags=["contact requests"])
_KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,200}$")


def client_ip(request: Request, trusted: frozenset[str]) -> str | None:
    """The client's address; X-Forwarded-For counts only when sent by a trusted proxy."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    if peer is None or peer not in trusted or not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return peer


@contact.post(
    "/contact-requests",
    status_code=202,
    response_model=Accepted,
    response_model_exclude_none=True,
    summary="A customer asks to be contacted (web form, chat, email, social, ...)",
    responses={
        200: {"model": Accepted, "description": "A repeat of an Idempotency-Key: the first result"}
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ContactRequestIn.model_json_schema()}},
        }
    },
)
async def create_contact_request(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_scope("intake:write"))],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    settings = _settings(request)
    if idempotency_key is not None and not _KEY_CHARS.match(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1-200 visible ASCII characters.")
    if not is_json_media_type(request.headers.get("content-type")):
        raise UnsupportedMediaType("Send the body as application/json.")
    body = await request.body()
    try:
        document = loads(body)
    except ValueError:
        raise MalformedJson() from None
    try:
        data = ContactRequestIn.model_validate(document)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in validation_errors(exc.errors())
        ]
        raise Unprocessable(
            "The request did not pass validation.", extra={"errors": errors}
        ) from None
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        outcome = await service.contact_request(
            session=session,
            settings=settings,
            limiter=limiter,
            data=data,
            raw=RawRequest.capture(body, request.headers),
            principal=principal,
            client_ip=client_ip(request, settings.trusted_proxy_set()),
            idempotency_key=idempotency_key,
        )
    except TooManyRequests as exc:
        _metrics(request).rate_limited.labels(str(exc.extra.get("limit", "unknown"))).inc()
        raise
    _metrics(request).inbound.labels("api", outcome.accepted.status).inc()
    return ORJSONResponse(
        outcome.accepted.model_dump(exclude_none=True),
        status_code=200 if outcome.repeated else 202,
    )


# --- operators ----------------------------------------------------------------------------

operators = APIRouter(prefix="/v1", tags=["operators"], route_class=JsonRoute)


@operators.get(
    "/inbound",
    dependencies=[AdminDep],
    summary="Inbound records, newest first (no bodies, no personal data)",
)
async def list_inbound(
    session: SessionDep,
    status: InboundStatus | None = None,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[InboundItem]:
    (before,) = read_cursor(cursor, row_id) if cursor else (None,)
    rows = await repository.list_inbound(
        session, status=status, provider=provider, limit=limit + 1, before_id=before
    )
    page, next_cursor = page_of(rows, limit, lambda row: (row.id,))
    items = [service.inbound_item(row) for row in page]
    return Page[InboundItem](items=items, next_cursor=next_cursor)


@operators.get(
    "/inbound/{inbound_id}",
    dependencies=[AdminDep],
    summary="One inbound record with its body and headers",
)
async def get_inbound(
    inbound_id: Annotated[str, Path(max_length=64)], session: SessionDep
) -> InboundDetail:
    row = await repository.get_inbound(session, inbound_id)
    if row is None:
        raise NotFound("No inbound record has this id.")
    return service.inbound_detail(row)


@operators.post(
    "/inbound/{inbound_id}/replay",
    dependencies=[AdminDep],
    summary="Parse a rejected record again with the current code and record it",
)
async def replay_inbound(
    inbound_id: Annotated[str, Path(max_length=64)], request: Request, session: SessionDep
) -> ReplayResult:
    return await service.replay(session=session, settings=_settings(request), inbound_id=inbound_id)


@operators.post(
    "/erasures",
    dependencies=[Depends(require_scope("internal", "admin"))],
    summary="Erase the personal data of these phones and emails (idempotent on id)",
)
async def post_erasure(
    body: ErasureRequest, request: Request, session: SessionDep
) -> ErasureResult:
    return await service.erase(session=session, settings=_settings(request), request=body)


# --- self-service links -----------------------------------------------------------------

selfservice = APIRouter(prefix="/v1/self", tags=["self-service"])
_FORWARDED_REQUEST = ("content-type", "accept", "accept-language")
# The page's security headers must reach the browser too (callback's `selfservice_page`).
_FORWARDED_RESPONSE = (
    "content-type",
    "cache-control",
    "location",
    "retry-after",
    "content-security-policy",
    "referrer-policy",
    "x-content-type-options",
    "x-frame-options",
    "content-language",
    # The page differs by Accept and Accept-Language, which are forwarded: caches must know.
    "vary",
)
# A counter of its own: a customer reloading their page must not use up the allowance of the
# contact requests sent from the same address, nor the other way round.
SELF_SERVICE_IP = "self_service_ip"


async def _limit_self_service(request: Request) -> None:
    """Count the request against its client address, or refuse it before it reaches callback."""
    settings = _settings(request)
    address = client_ip(request, settings.trusted_proxy_set())
    if address is None:
        return
    limit = AbuseLimit(
        SELF_SERVICE_IP, address, settings.rate_limit_self_service_per_ip, label="client IP"
    )
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        await limiter.hit([limit], what="self-service requests")
    except TooManyRequests:
        _metrics(request).rate_limited.labels(SELF_SERVICE_IP).inc()
        # The event alone: the address, the token and the path are the customer's.
        log.info("intake.self_service.rate_limited")
        raise


async def _forward_self_service(token: str, request: Request) -> Response:
    await _limit_self_service(request)
    client: httpx.AsyncClient = request.app.state.callback_client
    headers = {
        name: request.headers[name] for name in _FORWARDED_REQUEST if name in request.headers
    }
    try:
        upstream = await client.request(
            request.method,
            f"/v1/self/{quote(token, safe='')}",
            params=request.url.query or None,
            content=await request.body() if request.method == "POST" else None,
            headers=headers,
        )
    except httpx.HTTPError as exc:
        log.warning("intake.self_service.unavailable", error=type(exc).__name__)
        raise ServiceUnavailable(
            "The callback service cannot be reached just now; please try again shortly.",
            headers={"Retry-After": "30"},
        ) from None
    kept = {n: upstream.headers[n] for n in _FORWARDED_RESPONSE if n in upstream.headers}
    return Response(upstream.content, status_code=upstream.status_code, headers=kept)


Token = Annotated[str, Path(max_length=1024)]
_SlotId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="To rebook: the `id` of one of the view's `free_slots`.",
        examples=["2026-11-24T12:30:00Z"],
    ),
]


# Documented, never parsed: the body goes to callback as it came, so what callback accepts
# (and how it answers what it does not) stays callback's alone. These mirror its
# `SelfServiceAction` and the form its page posts.
class SelfServiceActionIn(BaseModel):
    """Cancel, or rebook to another slot: what an API client posts as JSON."""

    model_config = ConfigDict(extra="forbid", title="SelfServiceAction")

    action: Literal["cancel", "rebook"]
    slot_id: _SlotId | None = None


class SelfServiceFormIn(BaseModel):
    """What the self-service page's HTML forms post; answered with a page or a redirect."""

    model_config = ConfigDict(title="SelfServiceForm")

    action: Literal["cancel", "rebook", "survey"]
    slot_id: _SlotId | None = None
    lang: Annotated[Language, Field(description="The page's language to answer in.")] | None = None
    # The one-question survey page (DESIGN §13); callback cuts a longer comment.
    score: (
        Annotated[int, Field(ge=1, le=5, description="The survey's answer, with action `survey`.")]
        | None
    ) = None
    comment: (
        Annotated[str, Field(max_length=SURVEY_COMMENT_MAX, description="Free text beside it.")]
        | None
    ) = None


_SELF_SERVICE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SelfServiceActionIn.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": SelfServiceFormIn.model_json_schema()},
        },
    }
}


@selfservice.get("/{token}", summary="The customer's self-service page (served by callback)")
async def self_service_view(token: Token, request: Request) -> Response:
    return await _forward_self_service(token, request)


@selfservice.post(
    "/{token}",
    summary="The customer cancels or rebooks (handled by callback)",
    openapi_extra=_SELF_SERVICE_BODY,
)
async def self_service_act(token: Token, request: Request) -> Response:
    return await _forward_self_service(token, request)
