"""Callback's configuration as operators write it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.callback.settings import CallbackSettings


def test_defaults_need_no_provider(settings_kwargs: dict[str, Any]) -> None:
    settings = CallbackSettings(**settings_kwargs)
    assert (settings.sms_provider, settings.email_provider) == ("file", "file")
    assert settings.sms_allowed_regions == {"FI", "SE", "EE"}
    assert settings.confirmation_cooldown_minutes == 60


def test_allowed_regions_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGBACK_SMS_ALLOWED_REGIONS", "fi, no ,DK")
    assert CallbackSettings().sms_allowed_regions == {"FI", "NO", "DK"}


@pytest.mark.parametrize(
    ("chosen", "missing"),
    [
        ({"sms_provider": "http"}, "RINGBACK_SMS_HTTP_URL"),
        ({"sms_provider": "twilio"}, "RINGBACK_SMS_TWILIO_ACCOUNT_SID"),
        ({"email_provider": "smtp"}, "RINGBACK_SMTP_HOST"),
    ],
)
def test_a_chosen_provider_must_be_configured(chosen: dict[str, str], missing: str) -> None:
    with pytest.raises(ValidationError, match=missing):
        CallbackSettings(**chosen)  # type: ignore[arg-type]
