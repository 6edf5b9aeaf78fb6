"""Self-service links point at intake, which passes them to callback over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from services.callback.app import create_app as create_callback
from services.callback.settings import CallbackSettings
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.conftest import serve_asgi
from tests.support.infra import free_port
from tests.support.live import LiveServer


@pytest.fixture
async def callback_server(settings_kwargs: dict[str, Any]) -> AsyncIterator[LiveServer]:
    server = LiveServer(create_callback(CallbackSettings(**settings_kwargs)), free_port())
    yield server
    await server.stop()


@pytest.fixture
async def intake_before_callback(
    intake_settings: IntakeSettings, callback_server: LiveServer, clean_db: None
) -> AsyncIterator[AsyncClient]:
    settings = intake_settings.model_copy(update={"callback_url": callback_server.url})
    async for client in serve_asgi(create_app(settings)):
        yield client


@pytest.mark.parametrize(
    ("method", "content", "content_type"),
    [
        ("GET", None, None),
        ("POST", b'{"action": "cancel"}', "application/json"),
        ("POST", b"action=cancel", "application/x-www-form-urlencoded"),
    ],
)
async def test_intake_answers_what_callback_answers(
    intake_before_callback: AsyncClient,
    callback_server: LiveServer,
    method: str,
    content: bytes | None,
    content_type: str | None,
) -> None:
    await callback_server.start()
    headers = {"content-type": content_type} if content_type else {}
    path = "/v1/self/not-a-valid-token"
    through_intake = await intake_before_callback.request(
        method, path, content=content, headers=headers
    )
    async with httpx.AsyncClient(base_url=callback_server.url) as direct:
        from_callback = await direct.request(method, path, content=content, headers=headers)

    assert through_intake.status_code == from_callback.status_code
    assert through_intake.headers["content-type"] == from_callback.headers["content-type"]
    assert through_intake.content == from_callback.content


async def test_callback_down_is_a_503_problem(intake_before_callback: AsyncClient) -> None:
    response = await intake_before_callback.get("/v1/self/some-token")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
