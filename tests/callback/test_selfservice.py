"""Self-service tokens: signed, expiring, naming one callback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from services.callback.selfservice import (
    TOKEN_SALT,
    create_token,
    self_service_link,
    verify_token,
)
from services.callback.settings import CallbackSettings
from tests.callback.conftest import ReadNotificationsFn
from tests.callback.helpers import callback_body, plan_body


def test_token_round_trip_and_link(settings_kwargs: dict[str, Any]) -> None:
    settings = CallbackSettings(**settings_kwargs, public_base_url="https://rb.example.fi/")
    link = self_service_link(settings, "cb-1")
    assert link.startswith("https://rb.example.fi/v1/self/")
    assert verify_token(settings, link.rsplit("/", 1)[1]) == "cb-1"


def test_altered_or_foreign_tokens_are_refused(settings_kwargs: dict[str, Any]) -> None:
    settings = CallbackSettings(**settings_kwargs)
    token = create_token(settings, "cb-1")
    other = CallbackSettings(**{**settings_kwargs, "self_service_secret": "another-secret"})
    assert verify_token(settings, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert verify_token(other, token) is None
    assert verify_token(settings, "x" * 600) is None


def test_expired_tokens_are_refused(settings_kwargs: dict[str, Any]) -> None:
    settings = CallbackSettings(**settings_kwargs, self_service_max_age_hours=1)
    secret = settings.self_service_secret
    assert secret is not None

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2 * 3600

    old = URLSafeTimedSerializer(
        secret.get_secret_value(), salt=TOKEN_SALT, signer=TwoHoursAgo
    ).dumps({"cb": "cb-1"})
    assert verify_token(settings, old) is None


async def test_the_link_shows_cancels_and_rebooks_only_its_own_callback(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    read_notifications: ReadNotificationsFn,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    mine = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    other = (
        await client.post("/v1/callbacks", json=callback_body(phone="050 999 8888"), headers=auth)
    ).json()
    token = create_token(settings, mine["id"])

    view = await client.get(f"/v1/self/{token}")
    assert view.status_code == 200, view.text
    seen = view.json()
    assert (seen["status"], seen["can_cancel"], seen["can_rebook"]) == ("pending", True, True)
    assert "mahdollisimman pian" in seen["when"]
    assert "phone" not in seen
    assert "agent_id" not in seen

    slot = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    slot_id = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    rebooked = await client.post(f"/v1/self/{token}", json={"action": "rebook", "slot_id": slot_id})
    assert rebooked.status_code == 200, rebooked.text
    assert rebooked.json()["slot_id"] == slot_id
    assert rebooked.json()["status"] == "scheduled"
    missing_slot = await client.post(f"/v1/self/{token}", json={"action": "rebook"})
    assert missing_slot.status_code == 422

    cancelled = await client.post(f"/v1/self/{token}", json={"action": "cancel"})
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["can_cancel"] is False
    assert (await client.post(f"/v1/self/{token}", json={"action": "cancel"})).status_code == 409
    kinds = {(n.kind, n.channel) for n in await read_notifications(mine["id"])}
    # One notice SMS per cooldown (`ceilings`): the rebook's went, the cancel's goes by email.
    assert {("rebooked", "sms"), ("rebooked", "email"), ("cancelled", "email")} <= kinds
    assert ("cancelled", "sms") not in kinds
    # The other customer's callback is untouched.
    other_view = (await client.get(f"/v1/callbacks/{other['id']}", headers=auth)).json()
    assert other_view["status"] == "pending"


async def test_forged_and_expired_links_tell_nothing(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    created = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    token = create_token(settings, created["id"])
    secret = settings.self_service_secret
    assert secret is not None

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - (settings.self_service_max_age_hours + 1) * 3600

    expired = URLSafeTimedSerializer(
        secret.get_secret_value(), salt=TOKEN_SALT, signer=LongAgo
    ).dumps({"cb": created["id"]})
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    unknown = create_token(settings, "01a00000-0000-7000-8000-000000000000")

    for bad, status in ((forged, 404), (expired, 410), (unknown, 404), ("x" * 300, 404)):
        got = await client.get(f"/v1/self/{bad}")
        posted = await client.post(f"/v1/self/{bad}", json={"action": "cancel"})
        for response in (got, posted):
            assert response.status_code == status
            assert response.headers["content-type"].startswith("application/problem+json")
            assert created["id"] not in response.text
    detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
    assert detail["status"] == "pending"
