"""Webhooks out, end to end in one process: events recorded by history reach a subscriber on
loopback, signed (checked with the official `standardwebhooks` library), retried, redacted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.history.app import create_app
from services.history.models import WebhookDelivery, WebhookEndpoint
from services.history.webhook_delivery import CHANNEL
from shared.db import utcnow
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.support.webhook_receiver import Receiver, verifies, verify, webhook_receiver

PHONE = "+358401234567"
CALLBACK_DATA = {
    "status": "pending",
    "due_at": "2026-11-24T12:15:00Z",
    "sla_deadline": "2026-11-24T14:00:00Z",
    "attempts": 0,
    "contact_count": 1,
    "queue": "billing",
}


@pytest.fixture
async def app_client(clean_db: None, settings_kwargs: dict[str, Any]) -> AsyncIterator[AsyncClient]:
    """History with its webhook relay on, allowed to reach the loopback receiver."""
    settings = history_settings(
        settings_kwargs,
        webhook_allow_private=True,
        history_webhook_timeout_seconds=2.0,
        history_relay_poll_seconds=0.2,
    )
    async for http in serve_asgi(create_app(settings)):
        yield http


@pytest.fixture
async def admin_key(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin')}"}


@pytest.fixture
def receiver() -> Any:
    with webhook_receiver() as r:
        yield r


async def subscribe(
    client: AsyncClient, admin: dict[str, str], url: str, events: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "events": events}, headers=admin
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def callback_event(type_: str, callback_id: str, **data: Any) -> dict[str, Any]:
    return make_event(
        type=type_,
        direction="internal",
        customer={"phone": PHONE},
        subject={"kind": "callback", "id": callback_id},
        actor={"kind": "system", "id": "callback"},
        data={**CALLBACK_DATA, **data},
    )


async def record(client: AsyncClient, admin: dict[str, str], *events: dict[str, Any]) -> None:
    response = await client.post("/v1/events:batch", json={"events": list(events)}, headers=admin)
    assert response.status_code == 200, response.text


async def due_now(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Time passes: every delivery waiting for its next try is due now."""
    async with sessions() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.delivered_at.is_(None), WebhookDelivery.dead_at.is_(None))
            .values(available_at=text("now()"))
        )
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        await session.commit()


async def wait_until(check: Callable[[], Awaitable[bool]], *, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20.0
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_callback_events_reach_the_subscriber_signed(
    app_client: AsyncClient, admin_key: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(
        app_client, admin_key, receiver.url, ["callback.created", "callback.completed"]
    )
    await record(
        app_client,
        admin_key,
        make_event(customer={"phone": PHONE}),  # a missed call: no webhook name
        callback_event("callback_created", "cb-1"),
        callback_event("callback_claimed", "cb-1", status="in_progress"),  # not subscribed
        callback_event(
            "callback_completed", "cb-1", status="completed", outcome="reached", attempts=1
        ),
    )

    got = await asyncio.to_thread(receiver.wait_for, 2)
    await asyncio.sleep(0.5)  # nothing else arrives
    assert len(receiver.received) == 2
    bodies = [verify(endpoint["secret"], request) for request in got]
    assert sorted(body["type"] for body in bodies) == ["callback.completed", "callback.created"]
    completed = next(b for b in bodies if b["type"] == "callback.completed")
    assert completed["data"]["id"] == "cb-1"
    assert completed["data"]["status"] == "completed"
    assert completed["data"]["outcome"] == "reached"
    assert completed["data"]["queue"] == "billing"
    assert completed["data"]["customer_id"]
    assert completed["timestamp"] == "2026-11-24T12:00:00Z"
    assert len({request.webhook_id for request in got}) == 2


async def test_a_rotated_secret_and_the_old_one_both_verify(
    app_client: AsyncClient, admin_key: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    rotated = await app_client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=admin_key
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]

    await record(app_client, admin_key, callback_event("callback_created", "cb-2"))

    (request,) = await asyncio.to_thread(receiver.wait_for, 1)
    assert verifies(new_secret, request)
    assert verifies(endpoint["secret"], request)  # receivers not yet updated keep working
    assert len(request.headers["webhook-signature"].split(" ")) == 2


async def test_the_old_secret_stops_signing_when_its_overlap_ends(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    rotated = await app_client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=admin_key
    )
    async with sessions() as session:
        await session.execute(
            update(WebhookEndpoint).values(
                previous_secret_expires_at=utcnow() - timedelta(seconds=1)
            )
        )
        await session.commit()

    await record(app_client, admin_key, callback_event("callback_created", "cb-3"))

    (request,) = await asyncio.to_thread(receiver.wait_for, 1)
    assert verifies(rotated.json()["secret"], request)
    assert not verifies(endpoint["secret"], request)


async def test_retries_send_the_same_bytes_under_the_same_id_until_delivered(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    receiver.script.extend([500, 503])
    await record(app_client, admin_key, callback_event("callback_created", "cb-4"))

    for tries in (1, 2):
        await asyncio.to_thread(receiver.wait_for, 1, status=(500, 503)[tries - 1])
        item: dict[str, Any] = {}

        async def try_logged(tries: int = tries) -> bool:
            # The receiver has answered; the relay records the answer a moment later.
            nonlocal item
            log = await app_client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin_key
            )
            (item,) = log.json()["items"]
            return bool(item["last_status_code"] == (500, 503)[tries - 1])

        await wait_until(try_logged, what=f"try {tries} logged")
        assert item["status"] == "pending"
        assert item["attempts"] == tries
        assert item["next_attempt_at"] is not None
        await due_now(sessions)
    (delivered,) = await asyncio.to_thread(receiver.wait_for, 1)

    assert len(receiver.received) == 3
    assert {r.webhook_id for r in receiver.received} == {delivered.webhook_id}
    assert {r.body for r in receiver.received} == {delivered.body}
    assert verifies(endpoint["secret"], delivered)

    async def logged() -> bool:
        log = await app_client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin_key
        )
        (item,) = log.json()["items"]
        return bool(item["status"] == "delivered" and item["attempts"] == 3)

    await wait_until(logged, what="the delivery logged as delivered")


async def test_a_replay_sends_the_delivery_again_with_its_id(
    app_client: AsyncClient, admin_key: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    await record(app_client, admin_key, callback_event("callback_created", "cb-5"))
    (first,) = await asyncio.to_thread(receiver.wait_for, 1)
    log = await app_client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin_key
    )
    delivery_id = log.json()["items"][0]["id"]

    async def delivered() -> bool:
        log = await app_client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin_key
        )
        return bool(log.json()["items"][0]["status"] == "delivered")

    await wait_until(delivered, what="the first delivery recorded")
    replay = await app_client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}/replay",
        headers=admin_key,
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["status"] == "pending"

    _, again = await asyncio.to_thread(receiver.wait_for, 2)
    assert again.webhook_id == first.webhook_id
    assert again.body == first.body
    missing = await app_client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/999999/replay", headers=admin_key
    )
    assert missing.status_code == 404


async def test_410_turns_the_endpoint_off(
    app_client: AsyncClient, admin_key: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    receiver.script.append(410)
    await record(app_client, admin_key, callback_event("callback_created", "cb-6"))
    await asyncio.to_thread(receiver.wait_for, 1, status=410)

    async def off() -> bool:
        got = await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
        return got.json()["enabled"] is False

    await wait_until(off, what="the endpoint turned off")
    got = (
        await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
    ).json()
    assert got["disabled_reason"] == "gone"
    metrics = (await app_client.get("/metrics")).text
    labels = f'endpoint="{endpoint["id"]}",reason="gone"'
    assert f"ringback_webhook_endpoints_disabled_total{{{labels}}} 1.0" in metrics

    await record(
        app_client, admin_key, callback_event("callback_completed", "cb-6", status="completed")
    )
    await asyncio.sleep(1.0)
    assert len(receiver.received) == 1  # nothing more goes to a gone subscriber


async def test_five_days_of_failures_turn_the_endpoint_off(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    receiver.status = 500
    async with sessions() as session:
        await session.execute(
            update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(days=4, hours=23))
        )
        await session.commit()
    await record(app_client, admin_key, callback_event("callback_created", "cb-7"))
    await asyncio.to_thread(receiver.wait_for, 1, status=500)
    await asyncio.sleep(0.5)
    got = (
        await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
    ).json()
    assert got["enabled"] is True  # four days and 23 hours: still on

    async with sessions() as session:
        await session.execute(
            update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(days=5, hours=1))
        )
        await session.commit()
    await due_now(sessions)
    await asyncio.to_thread(receiver.wait_for, 2, status=500)

    async def off() -> bool:
        got = await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
        return got.json()["enabled"] is False

    await wait_until(off, what="the failing endpoint turned off")
    got = (
        await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
    ).json()
    assert got["disabled_reason"] == "failing"
    metrics = (await app_client.get("/metrics")).text
    assert 'reason="failing"} 1.0' in metrics


async def test_a_success_clears_the_failing_clock(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    receiver.script.append(500)
    await record(app_client, admin_key, callback_event("callback_created", "cb-8"))
    await asyncio.to_thread(receiver.wait_for, 1, status=500)

    async def failing() -> bool:
        got = await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
        return got.json()["failing_since"] is not None

    await wait_until(failing, what="the endpoint marked failing")
    await due_now(sessions)
    await asyncio.to_thread(receiver.wait_for, 1)

    async def recovered() -> bool:
        got = await app_client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=admin_key)
        return got.json()["failing_since"] is None

    await wait_until(recovered, what="the failing clock cleared")


async def test_redirects_are_not_followed(
    app_client: AsyncClient, admin_key: dict[str, str], receiver: Receiver
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["*"])
    receiver.script.append(307)
    await record(app_client, admin_key, callback_event("callback_created", "cb-9"))
    await asyncio.to_thread(receiver.wait_for, 1, status=307)

    async def logged() -> bool:
        log = await app_client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=admin_key
        )
        item = log.json()["items"][0]
        return bool(item["last_status_code"] == 307 and item["status"] == "pending")

    await wait_until(logged, what="the redirect logged as a failed try")
    assert len(receiver.received) == 1


async def test_customer_events_carry_the_customer_and_erasure_only_ids(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await subscribe(
        app_client, admin_key, receiver.url, ["customer.merged", "customer.erased"]
    )
    await record(
        app_client,
        admin_key,
        make_event(customer={"phone": PHONE}),
        make_event(channel="email", customer={"email": "maija@example.fi"}),
        make_event(channel="email", customer={"phone": PHONE, "email": "maija@example.fi"}),
    )
    (merged,) = await asyncio.to_thread(receiver.wait_for, 1)
    data = verify(endpoint["secret"], merged)["data"]
    assert data["phones"] == [PHONE]
    assert data["emails"] == ["maija@example.fi"]
    assert data["merged_customer_id"]

    erased = await app_client.delete(f"/v1/customers/{data['id']}", headers=admin_key)
    assert erased.status_code == 200, erased.text
    _, gone = await asyncio.to_thread(receiver.wait_for, 2)
    body = verify(endpoint["secret"], gone)
    assert body["type"] == "customer.erased"
    assert set(body["data"]) == {"customer_id", "erasure_id"}
    assert PHONE not in gone.body.decode()

    async with sessions() as session:
        stored = (await session.scalars(select(WebhookDelivery.payload))).all()
    assert all("maija" not in str(payload) and PHONE not in str(payload) for payload in stored)


async def test_pending_deliveries_of_an_erased_customer_go_out_without_their_data(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await subscribe(app_client, admin_key, receiver.url, ["notification.sent"])
    receiver.script.append(503)
    sent = make_event(
        type="notification_sent",
        channel="sms",
        direction="outbound",
        customer={"phone": PHONE, "name": "Maija Meikäläinen"},
        summary=f"Confirmation sent to {PHONE}",
        data={"notification_id": "n-1", "kind": "confirmation"},
    )
    await record(app_client, admin_key, sent)
    (first,) = await asyncio.to_thread(receiver.wait_for, 1, status=503)
    assert PHONE in first.body.decode()  # the event as the timeline shows it

    customer_id = verify(endpoint["secret"], first)["data"]["customer_id"]
    erased = await app_client.delete(f"/v1/customers/{customer_id}", headers=admin_key)
    assert erased.status_code == 200, erased.text
    await due_now(sessions)

    (retried,) = await asyncio.to_thread(receiver.wait_for, 1)
    assert retried.webhook_id == first.webhook_id
    body = verify(endpoint["secret"], retried)
    assert body["type"] == "notification.sent"
    assert body["data"] == {"customer_id": customer_id, "redacted": True}
    assert PHONE not in retried.body.decode()
    assert "Maija" not in retried.body.decode()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_name_that_now_resolves_inside_is_refused_at_delivery(
    host: str,
    clean_db: None,
    settings_kwargs: dict[str, Any],
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An endpoint accepted while its name resolved outside (here: written before the rule
    applied) is not reached once the name points inside: checked on every connection. An
    address in the URL, which nothing resolves, is checked on every request."""
    settings = history_settings(settings_kwargs, history_relay_poll_seconds=0.2)
    async for client in serve_asgi(create_app(settings)):
        async with sessions() as session:
            now = utcnow()
            session.add(
                WebhookEndpoint(
                    id="0193a000-0000-7000-8000-000000000001",
                    url=receiver.url.replace("127.0.0.1", host),
                    events=["*"],
                    secret="whsec_" + "A" * 32,
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.commit()
        await record(client, admin_key, callback_event("callback_created", "cb-10"))

        async def refused() -> bool:
            async with sessions() as session:
                error = await session.scalar(select(WebhookDelivery.last_error))
            return error is not None and "loopback" in error

        await wait_until(refused, what="the delivery refused")
    assert receiver.arrived == []


async def test_finished_deliveries_are_deleted_after_the_keep_days(
    app_client: AsyncClient,
    admin_key: dict[str, str],
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await subscribe(app_client, admin_key, receiver.url, ["*"])
    receiver.script.append(500)
    await record(
        app_client,
        admin_key,
        callback_event("callback_created", "cb-11"),
        callback_event("callback_created", "cb-12"),
    )
    await asyncio.to_thread(receiver.wait_for, 1)
    await asyncio.to_thread(receiver.wait_for, 1, status=500)

    async def one_delivered() -> bool:
        async with sessions() as session:
            rows = (await session.scalars(select(WebhookDelivery))).all()
        return sum(r.delivered_at is not None for r in rows) == 1 and all(
            r.last_attempt_at is not None and (r.delivered_at or r.last_status_code) for r in rows
        )

    await wait_until(one_delivered, what="one delivered, one failed")
    async with sessions() as session:
        await session.execute(
            update(WebhookDelivery).values(created_at=utcnow() - timedelta(days=31))
        )
        await session.commit()
    relay = app_client._transport.app.state.webhook_relay  # type: ignore[attr-defined]

    assert await relay.purge_finished() == 1
    async with sessions() as session:
        (left,) = (await session.scalars(select(WebhookDelivery))).all()
    assert left.delivered_at is None  # still being tried: kept whatever its age
