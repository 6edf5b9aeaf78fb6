"""A new self-service secret keeps the links already sent working until they expire."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from services.callback.app import create_app
from services.callback.selfservice import TOKEN_SALT, create_token, self_service_link
from services.callback.settings import CallbackSettings
from tests.callback.helpers import callback_body
from tests.conftest import serve_asgi

OLD, OLDER, NEW = (secrets.token_urlsafe(32) for _ in range(3))


def _settings(settings_kwargs: dict[str, Any], tmp_path: Path, **values: Any) -> CallbackSettings:
    return CallbackSettings(
        **{**settings_kwargs, **values},
        public_base_url="https://asiointi.example.fi",
        sink_dir=tmp_path / "sink",
    )


@pytest.fixture
def rotated(settings_kwargs: dict[str, Any], tmp_path: Path) -> CallbackSettings:
    """Mid-rotation: signs with NEW, still accepts links signed with OLD or OLDER."""
    return _settings(
        settings_kwargs,
        tmp_path,
        self_service_secret=NEW,
        self_service_previous_secrets=f"{OLD}, {OLDER}",
    )


@pytest.fixture
async def client(rotated: CallbackSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for http in serve_asgi(create_app(rotated)):
        yield http


@pytest.fixture
async def callback_id(client: AsyncClient, auth: dict[str, str]) -> str:
    created = await client.post("/v1/callbacks", json=callback_body(), headers=auth)
    assert created.status_code == 201, created.text
    callback: str = created.json()["id"]
    return callback


def _signed(secret: str, callback_id: str, *, age_hours: float = 0) -> str:
    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_hours * 3600)

    serializer = URLSafeTimedSerializer(secret, salt=TOKEN_SALT, signer=Then)
    return serializer.dumps({"cb": callback_id})


async def test_a_link_signed_before_the_rotation_still_opens(
    client: AsyncClient,
    callback_id: str,
    settings_kwargs: dict[str, Any],
    tmp_path: Path,
) -> None:
    # The link as the customer got it, from a process that still had OLD as its secret.
    before = _settings(settings_kwargs, tmp_path, self_service_secret=OLD)
    sent_before = create_token(before, callback_id)
    for token in (sent_before, _signed(OLDER, callback_id, age_hours=1)):
        view = await client.get(f"/v1/self/{token}")
        assert view.status_code == 200, view.text
        assert view.json()["status"] == "pending"
    cancelled = await client.post(f"/v1/self/{sent_before}", json={"action": "cancel"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"


async def test_a_previous_secret_s_link_expires_like_any_other(
    client: AsyncClient, callback_id: str, rotated: CallbackSettings
) -> None:
    max_age = rotated.self_service_max_age_hours
    almost = _signed(OLD, callback_id, age_hours=max_age - 1)
    expired = _signed(OLD, callback_id, age_hours=max_age + 1)
    assert (await client.get(f"/v1/self/{almost}")).status_code == 200
    for response in (
        await client.get(f"/v1/self/{expired}"),
        await client.post(f"/v1/self/{expired}", json={"action": "cancel"}),
    ):
        assert response.status_code == 410
        assert callback_id not in response.text


async def test_a_link_signed_with_an_unknown_secret_is_not_found(
    client: AsyncClient, callback_id: str
) -> None:
    forged = _signed(secrets.token_urlsafe(32), callback_id)
    for response in (
        await client.get(f"/v1/self/{forged}"),
        await client.post(f"/v1/self/{forged}", json={"action": "cancel"}),
    ):
        assert response.status_code == 404
        assert callback_id not in response.text


async def test_new_links_are_signed_with_the_current_secret(
    client: AsyncClient,
    callback_id: str,
    rotated: CallbackSettings,
    settings_kwargs: dict[str, Any],
    tmp_path: Path,
) -> None:
    link = self_service_link(rotated, callback_id)
    assert link.startswith("https://asiointi.example.fi/v1/self/")
    token = link.rsplit("/", 1)[1]
    assert (await client.get(f"/v1/self/{token}")).status_code == 200
    # Once the overlap is over and the previous secrets are gone, the new links still open,
    # and the links signed before the rotation no longer do.
    after = _settings(settings_kwargs, tmp_path, self_service_secret=NEW)
    async for later in serve_asgi(create_app(after)):
        assert (await later.get(f"/v1/self/{token}")).status_code == 200
        assert (await later.get(f"/v1/self/{_signed(OLD, callback_id)}")).status_code == 404
    # A process rolled back to the old secret alone does not know the new links.
    before = _settings(settings_kwargs, tmp_path, self_service_secret=OLD)
    async for rolled_back in serve_asgi(create_app(before)):
        assert (await rolled_back.get(f"/v1/self/{token}")).status_code == 404
