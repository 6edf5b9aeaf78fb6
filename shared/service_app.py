"""The frame every service's `create_app(settings)` is built on: lifespan, middleware, health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import httpx
import structlog
from arq.connections import ArqRedis
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from prometheus_client import CollectorRegistry
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, HTMLResponse, Response

from shared.auth import KeyVerifier
from shared.db import create_engine, create_session_factory, ping
from shared.error_handlers import install_error_handlers
from shared.errors import NotFound
from shared.http import create_http_client
from shared.jobs import job_deserializer, job_serializer
from shared.jsonutil import ORJSONResponse
from shared.metrics import CONTENT_TYPE_LATEST, HttpMetrics, render
from shared.middleware import BodyLimitMiddleware, RequestContextMiddleware
from shared.redis_url import redis_pool
from shared.settings import CommonSettings

log = structlog.get_logger("ringback.app")

# A service may add its own resources to the lifespan (relay tasks, LISTEN connections, ...).
Extension = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# What a browser page on an allowed origin may use: the API's verbs and the headers its
# clients send. Keys travel in `Authorization`, never in cookies, so no credentials mode.
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID")
CORS_EXPOSE = ("X-Request-ID",)


def create_redis(settings: CommonSettings) -> ArqRedis:
    """Redis as arq's client (a `redis.asyncio.Redis` too), with our JSON job serializer.

    Connections are made on first use, not here: a service starts while Redis is down and
    says so on `/readyz` instead of crash-looping.
    """
    pool = redis_pool(settings.require_redis_url(), socket_connect_timeout=2)
    return ArqRedis(
        connection_pool=pool,
        default_queue_name=settings.queue_name,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
    )


def create_service_app(
    *,
    name: str,
    settings: CommonSettings,
    routers: Sequence[APIRouter],
    peers: Sequence[str] = (),
    description: str = "",
    extensions: Sequence[Extension] = (),
    body_limits: Mapping[str, int] | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """A FastAPI app for service `name` with the house middleware, errors and probes.

    `cors_origins`: browser origins whose pages may call the API (none: same-origin only).
    """
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, application_name=f"ringback.{name}", service=name)
        redis = create_redis(settings)
        peer_client = create_http_client(settings, user_agent=f"ringback-{name}", timeout=2.0)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        app.state.redis = redis
        app.state.peer_client = peer_client
        app.state.key_verifier = KeyVerifier(
            app.state.session_factory,
            internal_key=settings.internal_api_keys(),
            cache_seconds=settings.api_key_cache_seconds,
        )
        try:
            async with AsyncExitStack() as stack:
                for extension in extensions:
                    await stack.enter_async_context(extension(app))
                log.info("service.started", service=name)
                yield
        finally:
            await peer_client.aclose()
            await redis.aclose(close_connection_pool=True)
            await engine.dispose()
            log.info("service.stopped", service=name)

    app = FastAPI(
        title=f"ringback {name}",
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        # FastAPI's own OpenTelemetry instrumentation switches itself on whenever a global
        # provider exists (`opentelemetry-instrument`, `FASTAPI_OTEL_AUTO_CONFIGURE`). Its
        # server spans would duplicate ours and record the raw path, where a self-service
        # token lives; ours (`shared.middleware`) name the route template only.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # FastAPI's own /docs page loads Swagger UI from a CDN; ours (`_docs_router`) serves
        # it from the installed package. Both only where `docs_served()` says.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_served() else None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.service_name = name
    install_error_handlers(app)
    app.include_router(_probe_router(name, peers, settings))
    if settings.docs_served():
        app.include_router(_docs_router(f"ringback {name}"))
    for router in routers:
        app.include_router(router)
    # Outermost first: the request id must exist before a 413 is answered.
    app.add_middleware(
        BodyLimitMiddleware, limit=settings.body_limit_bytes, per_path=body_limits or {}
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if cors_origins:
        # Outermost: a preflight is answered before anything else looks at the request.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=list(CORS_METHODS),
            allow_headers=list(CORS_HEADERS),
            expose_headers=list(CORS_EXPOSE),
            max_age=600,
        )
    return app


def _probe_router(name: str, peers: Sequence[str], settings: CommonSettings) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @router.get("/readyz", summary="Own database and Redis reachable; peers reported only")
    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        checks["database"] = await _check(ping(request.app.state.engine))
        checks["redis"] = await _check(request.app.state.redis.ping())
        peer_status = {
            peer: await _check_peer(request.app.state.peer_client, settings.peer_url(peer))
            for peer in peers
        }
        failed = [k for k, v in checks.items() if v != "ok"]
        body: dict[str, Any] = {
            "status": "ready" if not failed else "unready",
            "service": name,
            "checks": checks,
            "peers": peer_status,
        }
        if failed:
            body["failed"] = failed
        return ORJSONResponse(body, status_code=503 if failed else 200)

    if settings.metrics_served():

        @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
        async def metrics(request: Request) -> Response:
            return Response(render(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)

    return router


# Swagger UI's files, shipped inside the fastapi-offline package; the only files served.
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}


def _docs_router(title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    assets = Path(fastapi_offline.__file__).parent / "static"

    @router.get("/docs")
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/favicon.png",
        )

    @router.get("/docs/oauth2-redirect")
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/docs/{asset}")
    async def docs_asset(asset: str) -> Response:
        if asset not in _DOCS_ASSETS:
            raise NotFound("No such file of the API documentation.")
        return FileResponse(
            assets / asset,
            media_type=_DOCS_ASSETS[asset],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router


async def _check(awaitable: Any) -> str:
    try:
        await asyncio.wait_for(awaitable, timeout=2.0)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


async def _check_peer(client: httpx.AsyncClient, base_url: str) -> str:
    try:
        response = await client.get(f"{base_url}/healthz")
    except httpx.HTTPError as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok" if response.status_code == 200 else f"status {response.status_code}"
