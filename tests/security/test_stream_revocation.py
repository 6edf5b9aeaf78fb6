"""A live stream ends once its key is revoked, instead of living as long as the connection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.history.app import create_app
from shared.apikeys import create_key, revoke_key
from tests.history.conftest import history_settings
from tests.history.test_stream import SseReader, _wait_subscribed, post, sse
from tests.support.live import LiveServer, live

pytestmark = pytest.mark.usefixtures("clean_db")

CACHE_SECONDS = 1.0


@pytest.fixture
async def server(settings_kwargs: dict[str, Any]) -> AsyncIterator[LiveServer]:
    settings = history_settings(
        settings_kwargs,
        history_stream_heartbeat_seconds=0.3,
        api_key_cache_seconds=CACHE_SECONDS,
    )
    async with live(create_app(settings)) as running:
        yield running


async def _drain(stream: SseReader) -> None:
    """Read on: whatever was already on its way may still arrive; then the stream must end."""
    for _ in range(10):
        await stream.next(seconds=10)


async def test_a_revoked_keys_stream_is_closed_within_the_key_cache_period(
    server: LiveServer,
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    writer = {"Authorization": f"Bearer {await make_key('history:write')}"}
    async with sessions() as session:
        row, key = await create_key(session, name="agent-ui", scopes=["history:read"])
        await session.commit()
    customer_id = (await post(server, writer))["customer_id"]
    async with sse(server, {"Authorization": f"Bearer {key}"}, customer_id=customer_id) as stream:
        await _wait_subscribed(server)
        seen = await post(server, writer, summary="while the key is good")
        assert (await stream.next()).data["id"] == seen["id"]

        async with sessions() as session:
            assert await revoke_key(session, key_id=row.id)
            await session.commit()
        revoked_at = time.monotonic()
        await post(server, writer, summary="after the key was revoked")
        with pytest.raises(EOFError):
            await _drain(stream)
        closed_after = time.monotonic() - revoked_at
    # The cache may hold the key for one period, and the stream asks once per period.
    assert closed_after < 3 * CACHE_SECONDS + 2


async def test_a_good_keys_stream_stays_open_past_many_key_cache_periods(
    server: LiveServer, make_key: Callable[..., Awaitable[str]]
) -> None:
    writer = {"Authorization": f"Bearer {await make_key('history:write')}"}
    reader = {"Authorization": f"Bearer {await make_key('history:read')}"}
    customer_id = (await post(server, writer))["customer_id"]
    async with sse(server, reader, customer_id=customer_id) as stream:
        await _wait_subscribed(server)
        started = time.monotonic()
        while time.monotonic() - started < 3 * CACHE_SECONDS:
            assert await stream.comment(2) == ": keep-alive"
        later = await post(server, writer, summary="still listening")
        assert (await stream.next()).data["id"] == later["id"]
