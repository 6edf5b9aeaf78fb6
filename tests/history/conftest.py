"""History's fixtures: the app on the run's database, and keys with the scopes tests need."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from services.history.app import create_app
from services.history.settings import HistorySettings
from shared.ids import new_id
from tests.conftest import serve_asgi


def history_settings(settings_kwargs: dict[str, Any], **overrides: Any) -> HistorySettings:
    """History's settings for a test: no erasure relay and no purge unless a test asks."""
    return HistorySettings(
        **{
            **settings_kwargs,
            "history_erasure_relay_enabled": False,
            "history_purge_enabled": False,
            **overrides,
        }
    )


@pytest.fixture
async def client(clean_db: None, settings_kwargs: dict[str, Any]) -> AsyncIterator[AsyncClient]:
    app = create_app(history_settings(settings_kwargs))
    async for http in serve_asgi(app):
        yield http


@pytest.fixture
async def admin(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin')}"}


@pytest.fixture
async def writer(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('history:write')}"}


@pytest.fixture
async def reader(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('history:read')}"}


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid event body; keyword arguments replace its fields."""
    body: dict[str, Any] = {
        "id": new_id(),
        "occurred_at": "2026-11-24T12:00:00Z",
        "channel": "phone",
        "direction": "inbound",
        "type": "missed_call",
        "customer": {"phone": "+358401234567"},
        "summary": "Missed call",
        "data": {},
    }
    body.update(overrides)
    return body
