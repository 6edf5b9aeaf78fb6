"""The API description: served from our own files where it is public, not at all in production."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.conftest import serve_asgi


def _settings(settings_kwargs: dict[str, Any], **overrides: Any) -> IntakeSettings:
    return IntakeSettings(**{**settings_kwargs, **overrides})


def _production(settings_kwargs: dict[str, Any], **overrides: Any) -> IntakeSettings:
    return _settings(
        settings_kwargs,
        environment="production",
        internal_api_key="rb_internal0000_" + secrets.token_urlsafe(32),
        self_service_secret=secrets.token_urlsafe(32),
        **overrides,
    )


async def test_docs_load_nothing_from_another_origin(settings_kwargs: dict[str, Any]) -> None:
    async for client in serve_asgi(create_app(_settings(settings_kwargs))):
        page = await client.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        sources += re.findall(r"""url: ['"]([^'"]+)['"]""", page.text)
        assert sources, page.text
        assert all(s.startswith("/") for s in sources), sources
        for path in ("/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"):
            asset = await client.get(path)
            assert asset.status_code == 200, path
            assert len(asset.content) > 10_000
        assert (await client.get("/docs/..%2Fcore.py")).status_code == 404
        assert (await client.get("/docs/core.py")).status_code == 404
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "ringback intake"


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/docs/swagger-ui-bundle.js"])
async def test_production_serves_no_api_description(
    settings_kwargs: dict[str, Any], path: str
) -> None:
    async for client in serve_asgi(create_app(_production(settings_kwargs))):
        answer = await client.get(path)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"


async def test_an_operator_may_publish_the_docs_in_production(
    settings_kwargs: dict[str, Any],
) -> None:
    async for client in serve_asgi(create_app(_production(settings_kwargs, public_docs=True))):
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
