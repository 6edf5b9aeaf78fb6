"""A path's secrets stay out of the logs: failures name the route's template, not the path."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter

from shared.logging import configure_logging
from shared.routing import JsonRoute
from shared.service_app import create_service_app
from shared.settings import CommonSettings
from tests.conftest import serve_asgi

TOKEN = "tok3n-of-a-customer-9f8e7d6c5b4a"
PHONE = "+358401110003"


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="DEBUG", json=True, process="pytest")
    yield stream
    monkeypatch.undo()
    configure_logging(level="WARNING", json=True, process="pytest")


def _router() -> APIRouter:
    router = APIRouter(route_class=JsonRoute)

    @router.get("/v1/self/{token}")
    async def self_service(token: str) -> None:
        raise RuntimeError("a bug while serving the page")

    @router.get("/v1/dnc/{phone}")
    async def dnc(phone: str) -> None:
        raise RuntimeError("a bug while checking the list")

    return router


async def test_a_500_logs_the_route_template_and_never_the_token_or_phone_in_the_path(
    settings_kwargs: dict[str, Any], log_output: io.StringIO
) -> None:
    app = create_service_app(
        name="paths", settings=CommonSettings(**settings_kwargs), routers=[_router()]
    )
    async for client in serve_asgi(app):
        assert (await client.get(f"/v1/self/{TOKEN}")).status_code == 500
        assert (await client.get(f"/v1/dnc/{PHONE}")).status_code == 500

    logged = log_output.getvalue()
    assert '"route": "/v1/self/{token}"' in logged
    assert '"route": "/v1/dnc/{phone}"' in logged
    assert "http.unhandled_error" in logged
    assert TOKEN not in logged
    assert PHONE not in logged
