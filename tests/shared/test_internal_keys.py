"""Several internal keys at once: a rotation never leaves one service refusing another."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.callback.app import create_app
from services.callback.settings import CallbackSettings
from shared.http import internal_client
from shared.settings import CommonSettings
from tests.support.gateways import sms_gateway
from tests.support.live import live


def _key() -> str:
    return "rb_internal0000_" + secrets.token_urlsafe(32)


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _callback(settings_kwargs: dict[str, Any], keys: str, tmp_path: Path) -> CallbackSettings:
    return CallbackSettings(**{**settings_kwargs, "internal_api_key": keys}, sink_dir=tmp_path)


async def test_a_service_accepts_every_listed_key_and_no_other(
    settings_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    old, new = _key(), _key()
    app = create_app(_callback(settings_kwargs, f"{old}, {new}", tmp_path))
    async with live(app) as server:
        async with internal_client(
            CommonSettings(callback_url=server.url), service="test", peer="callback"
        ) as client:
            for key in (old, new):
                answer = await client.get("/v1/callbacks", headers=_bearer(key))
                assert answer.status_code == 200, answer.text
            assert (await client.get("/v1/callbacks", headers=_bearer(_key()))).status_code == 401


async def test_a_process_sends_the_first_key_only(settings_kwargs: dict[str, Any]) -> None:
    first, second = _key(), _key()
    with sms_gateway() as peer:
        settings = CommonSettings(
            **{**settings_kwargs, "internal_api_key": f"{first},{second}", "callback_url": peer.url}
        )
        async with internal_client(settings, service="intake", peer="callback") as client:
            await client.post("/v1/anything", json={})
        assert [r.headers["authorization"] for r in peer.wait_for(1)] == [f"Bearer {first}"]


async def test_each_step_of_a_rotation_talks_to_the_steps_beside_it(
    settings_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    # The documented rotation: add the new key second, move it first, drop the old one. During
    # each rollout processes of two neighbouring steps run at once, and must accept each other;
    # skipping the middle steps (old key straight to new) is what used to mean downtime.
    old, new = _key(), _key()
    steps = [old, f"{old},{new}", f"{new},{old}", new]
    for index, serving in enumerate(steps):
        app = create_app(_callback(settings_kwargs, serving, tmp_path))
        async with live(app) as server:
            for caller in steps:
                settings = CommonSettings(
                    **{**settings_kwargs, "internal_api_key": caller, "callback_url": server.url}
                )
                async with internal_client(settings, service="test", peer="callback") as client:
                    status = (await client.get("/v1/callbacks")).status_code
                where = f"a process at step {steps.index(caller)} calling one at step {index}"
                sent = caller.split(",")[0]
                assert status == (200 if sent in serving.split(",") else 401), where
                if abs(steps.index(caller) - index) <= 1:
                    assert status == 200, where


def test_a_single_key_is_still_one_key() -> None:
    key = _key()
    settings = CommonSettings(internal_api_key=key)
    assert settings.internal_api_keys() == (key,)
    assert CommonSettings().internal_api_keys() == ()


def _production(**values: Any) -> dict[str, Any]:
    return {
        "environment": "production",
        "database_url": "postgresql://ringback:s3cret-Pa55@db:5432/ringback",
        "self_service_secret": secrets.token_urlsafe(32),
        **values,
    }


@pytest.mark.parametrize("weak", ["hunter2", "REPLACE-with-ringback-api-key-create-output", ""])
def test_production_refuses_a_weak_key_among_several(weak: str) -> None:
    for keys in (f"{_key()},{weak}", f"{weak},{_key()}"):
        with pytest.raises(ValidationError, match="RINGBACK_INTERNAL_API_KEY") as refused:
            CommonSettings(**_production(internal_api_key=keys))
        if weak:
            assert weak not in str(refused.value)
    assert CommonSettings(**_production(internal_api_key=f"{_key()},{_key()}")).internal_api_keys()
