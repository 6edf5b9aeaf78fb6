"""The dialer `RINGBACK_DIALER` names, built once per worker process."""

from __future__ import annotations

import httpx

from services.callback.dialers.base import PhoneDialer
from services.callback.dialers.twilio import TwilioDialer
from services.callback.dialers.webhook import WebhookDialer
from services.callback.settings import CallbackSettings
from shared.vocabulary import Dialer


def build_dialer(settings: CallbackSettings, *, client: httpx.AsyncClient) -> PhoneDialer | None:
    """None when calls are dialed by hand (`none`)."""
    public = settings.public_base_url or settings.peer_url("intake")
    if settings.dialer == Dialer.TWILIO:
        sid, token = settings.dialer_twilio_account_sid, settings.dialer_twilio_auth_token
        # Both checked by the settings validator.
        assert sid
        assert token
        return TwilioDialer(
            client=client,
            base_url=settings.dialer_twilio_base_url,
            account_sid=sid,
            auth_token=token.get_secret_value(),
            public_base_url=public,
            ring_seconds=settings.dial_ring_seconds,
            whisper=settings.dial_whisper,
            whisper_language=settings.dial_whisper_language,
        )
    if settings.dialer == Dialer.WEBHOOK:
        url, secret = settings.dialer_webhook_url, settings.dialer_webhook_secret
        assert url
        assert secret
        return WebhookDialer(
            client=client, url=url, secret=secret.get_secret_value(), public_base_url=public
        )
    return None
