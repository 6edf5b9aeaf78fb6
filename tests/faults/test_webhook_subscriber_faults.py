"""Webhook subscribers that fail: down for a while, hanging, and a relay killed mid-delivery.

What must hold (DESIGN §12): every event is delivered at least once, under the `webhook-id`
it was first sent with, once the subscriber answers; a subscriber that hangs costs its own
slots for at most the timeout and never delays another endpoint; a history process killed
with SIGKILL while a request is in flight sends it again after restarting.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.history.app import create_app
from services.history.models import WebhookDelivery
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.support.stack import running_stack
from tests.support.webhook_receiver import verifies, webhook_receiver

pytestmark = pytest.mark.timeout(180)

EVENTS = 20
PER_ENDPOINT = 4
TIMEOUT = 3.0


def callback_created(i: int) -> dict[str, Any]:
    return make_event(
        type="callback_created",
        direction="internal",
        customer={"phone": f"+35840{2_000_000 + i}"},
        subject={"kind": "callback", "id": f"cb-{i}"},
        data={"status": "pending"},
    )


@pytest.fixture
async def admin_key(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin')}"}


@pytest.fixture
async def history(clean_db: None, settings_kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    settings = history_settings(
        settings_kwargs,
        webhook_allow_private=True,
        history_webhook_timeout_seconds=TIMEOUT,
        history_webhook_per_endpoint=PER_ENDPOINT,
        history_relay_poll_seconds=0.2,
    )
    async for client in serve_asgi(create_app(settings)):
        yield client


async def _subscribe(client: Any, admin: dict[str, str], url: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=admin
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _message_ids(sessions: async_sessionmaker[AsyncSession], endpoint_id: str) -> set[str]:
    async with sessions() as session:
        return set(
            (
                await session.scalars(
                    select(WebhookDelivery.message_id).where(
                        WebhookDelivery.endpoint_id == endpoint_id
                    )
                )
            ).all()
        )


async def _due_now(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The backoff has passed: what waits for its next try is due."""
    async with sessions() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.delivered_at.is_(None),
                WebhookDelivery.dead_at.is_(None),
                WebhookDelivery.available_at > text("now()"),
                WebhookDelivery.last_attempt_at.is_not(None),
            )
            .values(available_at=text("now()"))
        )
        await session.commit()


async def test_a_subscriber_down_for_its_first_tries_gets_everything_once_up(
    history: Any, admin_key: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    with webhook_receiver() as receiver:
        # Down for the first 30 requests: every event fails at least once, some twice.
        receiver.script.extend([503] * 30)
        endpoint = await _subscribe(history, admin_key, receiver.url)
        response = await history.post(
            "/v1/events:batch",
            json={"events": [callback_created(i) for i in range(EVENTS)]},
            headers=admin_key,
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 60
        while len({r.webhook_id for r in receiver.answered(200)}) < EVENTS:
            assert time.monotonic() < deadline, "not every event was delivered"
            await _due_now(sessions)
            await asyncio.sleep(0.3)

        delivered = receiver.answered(200)
        failed = receiver.answered(503)
        sent_ids = await _message_ids(sessions, endpoint["id"])
    assert len(failed) == 30
    assert {r.webhook_id for r in delivered} == sent_ids  # nothing lost, no id invented
    assert {r.webhook_id for r in failed} <= sent_ids  # retries kept their ids
    by_id = {r.webhook_id: r.body for r in delivered}
    assert all(by_id[r.webhook_id] == r.body for r in failed)  # and their bytes
    assert all(verifies(endpoint["secret"], r) for r in delivered)


async def test_a_hanging_subscriber_times_out_and_delays_nobody_else(
    history: Any, admin_key: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    with webhook_receiver(hang=30.0) as dead, webhook_receiver() as alive:
        hanging = await _subscribe(history, admin_key, dead.url)
        healthy = await _subscribe(history, admin_key, alive.url)
        response = await history.post(
            "/v1/events:batch",
            json={"events": [callback_created(i) for i in range(EVENTS)]},
            headers=admin_key,
        )
        assert response.status_code == 200
        await asyncio.to_thread(alive.wait_for, EVENTS, timeout=30)

        async def timed_out() -> int:
            async with sessions() as session:
                return len(
                    (
                        await session.scalars(
                            select(WebhookDelivery.id).where(
                                WebhookDelivery.endpoint_id == hanging["id"],
                                WebhookDelivery.last_error.like("no answer within%"),
                            )
                        )
                    ).all()
                )

        # Everything reached the healthy endpoint before any hanging request was even cut off.
        assert await timed_out() == 0
        assert {r.webhook_id for r in alive.answered(200)} == await _message_ids(
            sessions, healthy["id"]
        )
        # Only its share was sent to the hanging one: the rest wait for a slot.
        assert dead.most_held == PER_ENDPOINT

        deadline = time.monotonic() + 20
        while await timed_out() < PER_ENDPOINT:
            assert time.monotonic() < deadline, "the hanging requests were not cut off"
            await asyncio.sleep(0.2)
        # Cut off after the timeout, the next ones go out (slots free), still at most four
        # at a time from our side; the receiver keeps holding the abandoned ones.
        deadline = time.monotonic() + 20
        while len(dead.arrived) < 2 * PER_ENDPOINT:
            assert time.monotonic() < deadline, "the freed slots were not used"
            await asyncio.sleep(0.2)


async def test_an_endpoint_with_slots_busy_gets_only_the_slots_left(
    history: Any, admin_key: dict[str, str]
) -> None:
    with webhook_receiver(hang=30.0) as dead:
        await _subscribe(history, admin_key, dead.url)
        first = await history.post(
            "/v1/events:batch",
            json={"events": [callback_created(i) for i in range(2)]},
            headers=admin_key,
        )
        assert first.status_code == 200
        deadline = time.monotonic() + 10
        while len(dead.arrived) < 2:
            assert time.monotonic() < deadline, "the first two were not sent"
            await asyncio.sleep(0.05)
        # Two requests hang; of ten more events only two may join them (four per endpoint).
        more = await history.post(
            "/v1/events:batch",
            json={"events": [callback_created(i) for i in range(2, 12)]},
            headers=admin_key,
        )
        assert more.status_code == 200
        deadline = time.monotonic() + 10
        while len(dead.arrived) < PER_ENDPOINT:
            assert time.monotonic() < deadline, "the free slots were not used"
            await asyncio.sleep(0.05)
        # Several relay passes (every 0.2 s) later, still only the four slots' worth.
        await asyncio.sleep(1.0)
        assert len(dead.arrived) == PER_ENDPOINT
        assert dead.most_held == PER_ENDPOINT


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    return {
        "RINGBACK_WEBHOOK_ALLOW_PRIVATE": "true",
        "RINGBACK_HISTORY_WEBHOOK_TIMEOUT_SECONDS": "2",
        "RINGBACK_HISTORY_RELAY_POLL_SECONDS": "0.2",
        "RINGBACK_HISTORY_ERASURE_RELAY_ENABLED": "false",
        "RINGBACK_LOG_LEVEL": "WARNING",
    }


async def test_a_relay_killed_mid_delivery_sends_it_again_under_the_same_id(
    clean_db: None,
    base_env: dict[str, str],
    stack_env: dict[str, str],
    tmp_path: Path,
    admin_key: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with (
        webhook_receiver(hang=60.0) as receiver,
        running_stack(base_env, tmp_path / "logs", stack_env, ("history",)) as stack,
    ):
        async with httpx.AsyncClient(base_url=stack.url("history"), timeout=10) as client:
            endpoint = await _subscribe(client, admin_key, receiver.url)
            response = await client.post("/v1/events", json=callback_created(1), headers=admin_key)
            assert response.status_code == 201
        deadline = time.monotonic() + 20
        while not receiver.arrived:
            assert time.monotonic() < deadline, "the delivery never started"
            await asyncio.sleep(0.05)
        first_id = receiver.arrived[0]

        stack.stop("history", signal.SIGKILL)  # mid-request: the receiver still holds it
        receiver.hang = 0.0
        stack.start("history")
        # The claim's lease (timeout 2 s + 10 s) runs out and the row is claimed again.
        (delivered,) = await asyncio.to_thread(receiver.wait_for, 1, timeout=40)

        async with sessions() as session:
            row = await session.scalar(select(WebhookDelivery))
        assert row is not None
        for _ in range(50):
            if row.delivered_at is not None:
                break
            await asyncio.sleep(0.2)
            async with sessions() as session:
                row = await session.scalar(select(WebhookDelivery))
            assert row is not None
    assert delivered.webhook_id == first_id
    assert verifies(endpoint["secret"], delivered)
    assert row.delivered_at is not None
    assert row.attempts == 2
