"""CORS on callback: the agent console (history's origin) may call the API with a key from the
browser; pages on other origins may not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient, Response
from pydantic import ValidationError

from services.callback.app import create_app
from services.callback.settings import CallbackSettings
from tests.conftest import serve_asgi

CONSOLE = "http://127.0.0.1:8003"  # history's default URL, where `make run` serves the console


async def _preflight(client: AsyncClient, origin: str, method: str = "POST") -> Response:
    return await client.options(
        "/v1/queue/claim",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


@pytest.fixture
async def configured(settings: CallbackSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    custom = settings.model_copy(
        update={"cors_allow_origins": ("https://agents.example.fi", "https://desk.example.fi")}
    )
    async for http in serve_asgi(create_app(custom)):
        yield http


async def test_preflight_from_the_console_origin_lets_it_post_json_with_a_key(
    client: AsyncClient,
) -> None:
    response = await _preflight(client, CONSOLE)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == CONSOLE
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key", "last-event-id"} <= {
        h.strip() for h in allowed_headers.split(",")
    }
    assert "POST" in response.headers["access-control-allow-methods"]
    # A key in a header, not a cookie: the browser is never told to send credentials.
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_from_another_origin_gets_no_allow_header(client: AsyncClient) -> None:
    response = await _preflight(client, "https://evil.example")

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_method_the_api_does_not_use_is_not_allowed(client: AsyncClient) -> None:
    response = await _preflight(client, CONSOLE, method="TRACE")
    # The console confirms a dial's proposed outcome with PATCH (§10).
    confirming = await _preflight(client, CONSOLE, method="PATCH")

    assert response.status_code == 400
    assert confirming.status_code == 200


async def test_answers_to_the_console_can_be_read_by_it_errors_included(
    client: AsyncClient, auth: dict[str, str]
) -> None:
    ok = await client.get("/v1/queue", headers={**auth, "Origin": CONSOLE})
    refused = await client.get("/v1/queue", headers={"Origin": CONSOLE})
    elsewhere = await client.get("/v1/queue", headers={**auth, "Origin": "https://evil.example"})

    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == CONSOLE
    assert ok.headers["access-control-expose-headers"].lower() == "x-request-id"
    # The console shows the problem's title and detail, so it must be able to read a 401.
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == CONSOLE
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_configured_origins_replace_the_default(configured: AsyncClient) -> None:
    assert (await _preflight(configured, "https://desk.example.fi")).status_code == 200
    assert (await _preflight(configured, "https://agents.example.fi")).status_code == 200
    default = await _preflight(configured, CONSOLE)
    assert "access-control-allow-origin" not in default.headers


async def test_no_origins_no_cors(settings: CallbackSettings, clean_db: None) -> None:
    async for http in serve_asgi(
        create_app(settings.model_copy(update={"cors_allow_origins": ()}))
    ):
        response = await _preflight(http, CONSOLE)
        assert "access-control-allow-origin" not in response.headers


def test_origins_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings_kwargs: dict[str, Any]
) -> None:
    monkeypatch.setenv("RINGBACK_CORS_ALLOW_ORIGINS", "https://Agents.example.fi/, http://x:8080")
    assert CallbackSettings(**settings_kwargs).cors_allow_origins == (
        "https://agents.example.fi",
        "http://x:8080",
    )
    monkeypatch.setenv("RINGBACK_CORS_ALLOW_ORIGINS", "")
    assert CallbackSettings(**settings_kwargs).cors_allow_origins == ()
    monkeypatch.delenv("RINGBACK_CORS_ALLOW_ORIGINS")
    assert CallbackSettings(
        **settings_kwargs, history_url="https://history.example.fi/ringback"
    ).cors_allow_origins == ("https://history.example.fi",)


@pytest.mark.parametrize(
    "value", ["agents.example.fi", "https://agents.example.fi/console", "ftp://x"]
)
def test_a_value_that_is_not_an_origin_is_refused(
    monkeypatch: pytest.MonkeyPatch, settings_kwargs: dict[str, Any], value: str
) -> None:
    monkeypatch.setenv("RINGBACK_CORS_ALLOW_ORIGINS", value)
    with pytest.raises(ValidationError, match="origin"):
        CallbackSettings(**settings_kwargs)
