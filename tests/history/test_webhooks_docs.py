"""The Python receiver in docs/api.md ("Webhooks out") receives and verifies a real delivery."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from http.server import HTTPServer
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import WebhookVerificationError

from services.history.app import create_app
from services.history.models import WebhookDelivery
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.support.infra import ROOT


def receiver_example() -> str:
    doc = (ROOT / "docs" / "api.md").read_text()
    section = doc[doc.index("## Webhooks out") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Webhooks out section has no Python receiver"
    return match.group(1)


@pytest.fixture
async def history(clean_db: None, settings_kwargs: dict[str, Any]) -> AsyncIterator[AsyncClient]:
    settings = history_settings(
        settings_kwargs, webhook_allow_private=True, history_relay_poll_seconds=0.2
    )
    async for client in serve_asgi(create_app(settings)):
        yield client


async def test_the_documented_receiver_verifies_a_real_delivery(
    history: AsyncClient,
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    example: dict[str, Any] = {"__name__": "receiver_example"}
    exec(compile(receiver_example(), "docs/api.md", "exec"), example)
    server = HTTPServer(("127.0.0.1", 0), example["Receiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    admin = {"Authorization": f"Bearer {await make_key('admin')}"}
    try:
        created = await history.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{server.server_address[1]}/", "events": ["*"]},
            headers=admin,
        )
        example["SECRET"] = created.json()["secret"]
        event = make_event(
            type="callback_completed",
            direction="internal",
            subject={"kind": "callback", "id": "cb-doc"},
            data={"status": "completed", "outcome": "reached"},
        )
        assert (await history.post("/v1/events", json=event, headers=admin)).status_code == 201

        for _ in range(100):
            async with sessions() as session:
                row = await session.scalar(select(WebhookDelivery))
            if row is not None and row.delivered_at is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        server.shutdown()
        server.server_close()
    assert row is not None
    assert row.delivered_at is not None
    assert row.last_status_code == 204
    assert example["seen"] == {row.message_id}

    # The same function refuses what ringback did not sign.
    example["SECRET"] = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    with pytest.raises(WebhookVerificationError):
        example["handle"](
            b"{}", {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
        )
