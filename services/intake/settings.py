"""Intake's settings: webhook secrets, abuse limits, the relay's pace (beyond the common ones)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class IntakeSettings(CommonSettings):
    # Comma-separated `whsec_...` secrets; several at once so a rotation never drops a webhook.
    webhook_secrets: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    twilio_auth_token: SecretStr | None = None
    # Standard Webhooks secrets (`whsec_...`, comma-separated) of SMS gateways posting the
    # replies customers send (`POST /v1/webhooks/sms`, §13); apart from the call webhooks'.
    inbound_sms_webhook_secrets: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks secrets (`whsec_...`, comma-separated, all accepted) of "
        "SMS gateways posting customers' replies to `POST /v1/webhooks/sms`; unset: that webhook "
        "is refused (Twilio Messaging uses `RINGBACK_TWILIO_AUTH_TOKEN` instead)",
    )
    # What a caller waiting in a Twilio queue hears between offers (§11); unset: silence.
    twilio_hold_music_url: str | None = Field(default=None, max_length=1000)
    # Twilio waits for the wait URL's TwiML, and the caller hears nothing meanwhile: callback
    # gets this long to estimate before intake answers with hold music instead of an offer.
    offer_timeout_seconds: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="how long a Twilio wait request (`/v1/twiml/wait`) waits for callback's "
        "offer before the caller hears hold music instead",
    )
    cti_token: SecretStr | None = None
    relay_batch_size: int = Field(default=100, ge=1, le=1000)
    relay_poll_seconds: float = Field(default=1.0, gt=0)
    # The relay serves its own /metrics here (on `relay_metrics_host`); unset: no server.
    relay_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    relay_metrics_host: str = "127.0.0.1"
    # Intake faces the internet, and its counters (refused signatures, abuse refusals, traffic
    # per route) tell a stranger how it is attacked and how it copes: in production they are
    # served on a port of their own that only the scraper reaches, not on the API port.
    intake_metrics_on_api_port: bool | None = Field(
        default=None,
        description="serve `/metrics` on intake's API port; unset: yes outside production, "
        "no in production (scrape `RINGBACK_INTAKE_METRICS_PORT` there)",
    )
    intake_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="`ringback serve intake` also serves `/metrics` on this port; unset: not "
        "served",
    )
    intake_metrics_host: str = Field(
        default="127.0.0.1", description="address of intake's metrics server"
    )
    # Raw bodies of rejected payloads are kept for operators, up to this many bytes each ...
    rejected_body_limit_bytes: int = Field(default=16 * 1024, ge=0)
    # ... for this many days; call legs (only needed while a call is going on) for fewer.
    rejected_retention_days: int = Field(default=30, ge=1)
    call_leg_retention_days: int = Field(default=7, ge=1)

    # Abuse limits on contact requests, per rolling-hour window.
    rate_limit_window_seconds: int = Field(default=3600, ge=1)
    rate_limit_per_phone: int = Field(default=5, ge=1)
    rate_limit_per_ip: int = Field(default=30, ge=1)
    rate_limit_per_api_key: int = Field(default=300, ge=1)
    # The self-service link's pages, per client address and window. One customer's visit is a
    # handful of requests (the page, a choice, the confirmation, the page it redirects to, a
    # refresh or two), and the customers behind one office NAT or mobile carrier's CGNAT share
    # an address: 120 an hour lets some 20 of them use their links in the same hour, while one
    # address pressing "rebook" (each may send an SMS) is cut off after 120, however fast.
    rate_limit_self_service_per_ip: int = Field(
        default=120,
        ge=1,
        description="requests to self-service links (`/v1/self/...`) per client address per "
        "window; a counter apart from the contact requests'",
    )
    # Addresses of reverse proxies whose X-Forwarded-For names the real client (comma-separated).
    trusted_proxies: str = ""

    def webhook_secret_list(self) -> list[str]:
        if self.webhook_secrets is None:
            return []
        return _csv(self.webhook_secrets.get_secret_value())

    def inbound_sms_secret_list(self) -> list[str]:
        if self.inbound_sms_webhook_secrets is None:
            return []
        return _csv(self.inbound_sms_webhook_secrets.get_secret_value())

    def trusted_proxy_set(self) -> frozenset[str]:
        return frozenset(_csv(self.trusted_proxies))

    def metrics_served(self) -> bool:
        """`/metrics` on the API port: `intake_metrics_on_api_port`, else not in production."""
        if self.intake_metrics_on_api_port is not None:
            return self.intake_metrics_on_api_port
        return self.environment != "production"
