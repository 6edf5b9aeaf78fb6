"""Intake's settings: webhook secrets and the relay's pace, on top of the common ones."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


class IntakeSettings(CommonSettings):
    # Comma-separated `whsec_...` secrets; several at once so a rotation never drops a webhook.
    webhook_secrets: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    twilio_auth_token: SecretStr | None = None
    cti_token: SecretStr | None = None
    relay_batch_size: int = Field(default=100, ge=1, le=1000)
    relay_poll_seconds: float = Field(default=1.0, gt=0)
    # Raw bodies of rejected payloads are kept for operators, up to this many bytes each.
    rejected_body_limit_bytes: int = Field(default=16 * 1024, ge=0)

    def webhook_secret_list(self) -> list[str]:
        if self.webhook_secrets is None:
            return []
        raw = self.webhook_secrets.get_secret_value()
        return [part.strip() for part in raw.split(",") if part.strip()]
