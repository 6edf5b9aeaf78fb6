"""Webhook endpoints as an operator manages them: a secret shown once, filters, changes, safety."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from pydantic import ValidationError

from services.history.app import create_app
from services.history.settings import HistorySettings
from services.history.url_safety import UnsafeUrl, address_allowed, check_url
from services.history.webhook_endpoints import MAX_ENDPOINTS
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings

SUBSCRIBER = "http://127.0.0.1:9/hooks"


@pytest.fixture
async def open_client(
    clean_db: None, settings_kwargs: dict[str, Any]
) -> AsyncIterator[AsyncClient]:
    """History allowed to point webhooks at loopback (development and tests), relay off."""
    settings = history_settings(
        settings_kwargs, webhook_allow_private=True, history_webhook_relay_enabled=False
    )
    async for http in serve_asgi(create_app(settings)):
        yield http


@pytest.fixture
async def admin_key(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin')}"}


async def test_the_secret_is_shown_once(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    created = await open_client.post(
        "/v1/webhook-endpoints",
        json={"url": SUBSCRIBER, "events": ["callback.created"], "description": "CRM"},
        headers=admin_key,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["enabled"] is True
    assert body["events"] == ["callback.created"]

    one = await open_client.get(f"/v1/webhook-endpoints/{body['id']}", headers=admin_key)
    listed = await open_client.get("/v1/webhook-endpoints", headers=admin_key)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]
    assert body["secret"] not in listed.text


async def test_an_idempotency_key_repeat_answers_the_first_result(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    request = {"url": SUBSCRIBER, "events": ["*"]}
    headers = {**admin_key, "Idempotency-Key": "crm-setup-1"}
    first = await open_client.post("/v1/webhook-endpoints", json=request, headers=headers)
    again = await open_client.post("/v1/webhook-endpoints", json=request, headers=headers)
    other = await open_client.post(
        "/v1/webhook-endpoints", json={**request, "events": ["survey.answered"]}, headers=headers
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()  # the secret too: the first answer may have been lost
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")
    listed = await open_client.get("/v1/webhook-endpoints", headers=admin_key)
    assert len(listed.json()["items"]) == 1


async def test_two_creates_racing_under_one_key_make_one_endpoint(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    request = {"url": SUBSCRIBER, "events": ["*"]}
    headers = {**admin_key, "Idempotency-Key": "crm-setup-race"}
    answers = await asyncio.gather(
        *(
            open_client.post("/v1/webhook-endpoints", json=request, headers=headers)
            for _ in range(4)
        )
    )

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = await open_client.get("/v1/webhook-endpoints", headers=admin_key)
    assert len(listed.json()["items"]) == 1


@pytest.mark.parametrize(
    "events",
    [[], ["callback.exploded"], ["*", "callback.created"], ["missed_call"]],
)
async def test_bad_event_filters_are_refused(
    open_client: AsyncClient, admin_key: dict[str, str], events: list[str]
) -> None:
    response = await open_client.post(
        "/v1/webhook-endpoints", json={"url": SUBSCRIBER, "events": events}, headers=admin_key
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:2] == ["body", "events"]


async def test_patch_changes_filters_url_and_enabled(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    created = (
        await open_client.post(
            "/v1/webhook-endpoints", json={"url": SUBSCRIBER, "events": ["*"]}, headers=admin_key
        )
    ).json()
    path = f"/v1/webhook-endpoints/{created['id']}"
    changed = await open_client.patch(
        path,
        json={
            "events": ["callback.completed", "callback.failed"],
            "url": "http://127.0.0.1:10/other",
            "enabled": False,
        },
        headers=admin_key,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["events"] == ["callback.completed", "callback.failed"]
    assert body["url"] == "http://127.0.0.1:10/other"
    assert body["enabled"] is False
    assert body["disabled_reason"] is None
    on = await open_client.patch(path, json={"enabled": True}, headers=admin_key)
    assert on.json()["enabled"] is True
    unknown = await open_client.patch(path, json={"secret": "whsec_mine"}, headers=admin_key)
    assert unknown.status_code == 422


async def test_delete_removes_the_endpoint(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    created = (
        await open_client.post(
            "/v1/webhook-endpoints", json={"url": SUBSCRIBER, "events": ["*"]}, headers=admin_key
        )
    ).json()
    path = f"/v1/webhook-endpoints/{created['id']}"
    assert (await open_client.delete(path, headers=admin_key)).status_code == 204
    assert (await open_client.get(path, headers=admin_key)).status_code == 404
    assert (await open_client.delete(path, headers=admin_key)).status_code == 404
    assert (await open_client.get(f"{path}/deliveries", headers=admin_key)).status_code == 404


async def test_the_list_pages_with_a_cursor(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    ids = [
        (
            await open_client.post(
                "/v1/webhook-endpoints",
                json={"url": SUBSCRIBER, "events": ["*"]},
                headers=admin_key,
            )
        ).json()["id"]
        for _ in range(3)
    ]
    first = (await open_client.get("/v1/webhook-endpoints?limit=2", headers=admin_key)).json()
    second = (
        await open_client.get(
            f"/v1/webhook-endpoints?limit=2&cursor={first['next_cursor']}", headers=admin_key
        )
    ).json()
    assert [i["id"] for i in first["items"] + second["items"]] == ids
    assert second["next_cursor"] is None
    bad = await open_client.get("/v1/webhook-endpoints?cursor=nonsense", headers=admin_key)
    assert bad.status_code == 400


async def test_only_admin_manages_endpoints(
    open_client: AsyncClient, make_key: Callable[..., Awaitable[str]]
) -> None:
    reader = {"Authorization": f"Bearer {await make_key('history:read', 'history:write')}"}
    response = await open_client.post(
        "/v1/webhook-endpoints", json={"url": SUBSCRIBER, "events": ["*"]}, headers=reader
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "http://localhost:8080/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hooks",
        "http://192.168.1.1/hooks",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "ftp://example.com/hooks",
        "http://user:pass@example.com/hooks",
    ],
)
async def test_urls_inside_our_network_are_refused(
    clean_db: None,
    settings_kwargs: dict[str, Any],
    admin_key: dict[str, str],
    url: str,
) -> None:
    settings = history_settings(settings_kwargs, history_webhook_relay_enabled=False)
    async for client in serve_asgi(create_app(settings)):
        response = await client.post(
            "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=admin_key
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["body", "url"]
        listed = await client.get("/v1/webhook-endpoints", headers=admin_key)
        assert listed.json()["items"] == []


async def test_production_wants_https() -> None:
    with pytest.raises(UnsafeUrl, match="https"):
        await check_url("http://93.184.215.14/hooks", require_https=True, allow_private=False)
    await check_url("https://93.184.215.14/hooks", require_https=True, allow_private=False)
    await check_url("http://93.184.215.14/hooks", require_https=False, allow_private=False)


def test_public_and_private_addresses() -> None:
    assert address_allowed("93.184.215.14")
    assert address_allowed("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    for inside in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254"):
        assert not address_allowed(inside), inside
    for inside in ("::1", "fe80::1", "fd00:ec2::254", "::ffff:10.0.0.1", "0.0.0.0", "100.64.0.1"):
        assert not address_allowed(inside), inside


def test_production_refuses_the_allow_private_switch() -> None:
    production: dict[str, Any] = {
        "environment": "production",
        "database_url": "postgresql://ringback:s3cret-Pa55@db:5432/ringback",
        "internal_api_key": "rb_internal0000_" + secrets.token_urlsafe(32),
        "self_service_secret": secrets.token_urlsafe(32),
    }
    assert HistorySettings(**production).webhook_allow_private is False
    with pytest.raises(ValidationError, match="RINGBACK_WEBHOOK_ALLOW_PRIVATE"):
        HistorySettings(**production, webhook_allow_private=True)
    assert HistorySettings(
        **{**production, "environment": "development"}, webhook_allow_private=True
    )


async def test_the_number_of_endpoints_has_a_ceiling(
    open_client: AsyncClient, admin_key: dict[str, str]
) -> None:
    for _ in range(MAX_ENDPOINTS):
        created = await open_client.post(
            "/v1/webhook-endpoints", json={"url": SUBSCRIBER, "events": ["*"]}, headers=admin_key
        )
        assert created.status_code == 201
    refused = await open_client.post(
        "/v1/webhook-endpoints", json={"url": SUBSCRIBER, "events": ["*"]}, headers=admin_key
    )
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
