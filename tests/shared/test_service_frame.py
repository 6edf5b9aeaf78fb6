"""The frame every service shares: problem+json, request ids, auth, probes, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from httpx import AsyncClient
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.apikeys import ApiKey, Principal
from shared.auth import require_scope
from shared.errors import Conflict
from shared.http import create_http_client
from shared.routing import JsonRoute
from shared.service_app import create_service_app
from shared.settings import CommonSettings
from tests.conftest import serve_asgi


class Thing(BaseModel):
    name: str
    size: int


def _router(seen: dict[str, Any]) -> APIRouter:
    router = APIRouter(route_class=JsonRoute)

    @router.post("/things")
    async def make_thing(
        thing: Thing,
        principal: Annotated[Principal, Depends(require_scope("callbacks:write"))],
    ) -> dict[str, str]:
        return {"name": thing.name, "by": principal.name}

    @router.get("/things/conflict")
    async def conflict() -> None:
        raise Conflict("That thing is taken.")

    @router.get("/things/bug")
    async def bug() -> None:
        raise RuntimeError("secret internals")

    @router.get("/things/outgoing")
    async def outgoing(url: str) -> dict[str, str]:
        async with create_http_client(CommonSettings(), user_agent="test") as client:
            response = await client.get(url)
        return dict(response.json())

    return router


def build(settings_kwargs: dict[str, Any], **overrides: Any) -> FastAPI:
    settings = CommonSettings(**(settings_kwargs | overrides))
    return create_service_app(name="frame", settings=settings, routers=[_router({})])


@pytest.fixture
async def client(settings_kwargs: dict[str, Any], clean_db: None) -> AsyncIterator[AsyncClient]:
    async for c in serve_asgi(build(settings_kwargs)):
        yield c


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_unknown_route_and_wrong_method_are_problems(client: AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404)
    assert_problem(await client.delete("/healthz"), 405)


async def test_expected_failure_is_a_4xx_problem(client: AsyncClient) -> None:
    assert (
        assert_problem(await client.get("/things/conflict"), 409)["detail"]
        == "That thing is taken."
    )


async def test_a_bug_is_a_500_problem_without_a_stack_trace(client: AsyncClient) -> None:
    body = assert_problem(await client.get("/things/bug"), 500)
    assert "secret internals" not in str(body)
    assert "Traceback" not in str(body)


async def test_auth_401_403_and_success(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]]
) -> None:
    thing = {"name": "a", "size": 1}
    assert_problem(await client.post("/things", json=thing), 401)
    assert (await client.post("/things", json=thing)).headers["www-authenticate"] == "Bearer"
    bogus = {"authorization": "Bearer rb_000000000000_" + "x" * 43}
    assert_problem(await client.post("/things", json=thing, headers=bogus), 401)
    reader = await make_key("history:read")
    assert_problem(
        await client.post("/things", json=thing, headers={"authorization": f"Bearer {reader}"}), 403
    )
    writer = await make_key("callbacks:write", name="writer")
    ok = await client.post("/things", json=thing, headers={"authorization": f"Bearer {writer}"})
    assert ok.status_code == 200
    assert ok.json() == {"name": "a", "by": "writer"}
    admin = await make_key("admin")
    assert (
        await client.post("/things", json=thing, headers={"authorization": f"Bearer {admin}"})
    ).status_code == 200


async def test_keys_are_stored_only_as_digests(
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
    clean_db: None,
) -> None:
    key = await make_key("admin")
    async with sessions() as session:
        [row] = (await session.scalars(select(ApiKey))).all()
    assert key.startswith("rb_")
    assert key not in (row.digest, row.lookup)
    assert len(row.digest) == 64


async def test_the_configured_internal_key_has_the_internal_scope_only(
    client: AsyncClient, internal_key: str
) -> None:
    headers = {"authorization": f"Bearer {internal_key}"}
    assert_problem(
        await client.post("/things", json={"name": "a", "size": 1}, headers=headers), 403
    )


async def test_validation_problem_lists_errors_without_echoing_input(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]]
) -> None:
    headers = {"authorization": f"Bearer {await make_key('callbacks:write')}"}
    response = await client.post(
        "/things", json={"name": "a", "size": "+358 40 123 4567"}, headers=headers
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", "size"]
    assert "+358 40 123 4567" not in response.text


async def test_non_json_body_is_415(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]]
) -> None:
    headers = {
        "authorization": f"Bearer {await make_key('callbacks:write')}",
        "content-type": "text/plain",
    }
    assert_problem(await client.post("/things", content=b"name=a", headers=headers), 415)


async def test_request_id_is_echoed_or_made(client: AsyncClient) -> None:
    given = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz", headers={"x-request-id": "bad id with spaces\n"})
    assert made.headers["x-request-id"] != "bad id with spaces\n"
    assert len(made.headers["x-request-id"]) == 32


async def test_readyz_reports_ready_with_peers_down(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_is_503_naming_redis_when_redis_is_unreachable(
    settings_kwargs: dict[str, Any], clean_db: None
) -> None:
    app = build(settings_kwargs, redis_url="redis://127.0.0.1:1/0")
    async for c in serve_asgi(app):
        response = await c.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failed"] == ["redis"]
        assert (await c.get("/healthz")).status_code == 200


async def test_metrics_count_requests_by_route_template(client: AsyncClient) -> None:
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert (
        'ringback_http_requests_total{method="GET",route="/healthz",service="frame",status="200"}'
        in text
    )


async def test_trace_and_request_id_travel_on_outgoing_calls(
    settings_kwargs: dict[str, Any], clean_db: None
) -> None:
    """A service calling a peer passes on the same trace id and request id."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: dict[str, str] = {}

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.update({k.lower(): v for k, v in self.headers.items()})
            payload = b'{"ok": "yes"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        trace = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        async for c in serve_asgi(build(settings_kwargs)):
            response = await c.get(
                "/things/outgoing",
                params={"url": f"http://127.0.0.1:{port}/"},
                headers={"traceparent": trace, "x-request-id": "req-42"},
            )
            assert response.status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    assert received["x-request-id"] == "req-42"
    assert received["traceparent"].startswith("00-" + "a" * 32 + "-")
    assert received["traceparent"] != trace, "the outgoing call is a new span of the same trace"
