"""Self-service tokens: signed, expiring, naming one callback."""

from __future__ import annotations

import time
from typing import Any

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from services.callback.selfservice import (
    TOKEN_SALT,
    create_token,
    self_service_link,
    verify_token,
)
from services.callback.settings import CallbackSettings


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
