"""The configured providers, built once per worker process."""

from __future__ import annotations

import httpx

from services.callback.senders.base import EmailSender, SmsSender
from services.callback.senders.email_smtp import SmtpEmailSender
from services.callback.senders.file_sink import FileEmailSender, FileSmsSender
from services.callback.senders.sms_http import HttpSmsSender
from services.callback.senders.sms_twilio import TwilioSmsSender
from services.callback.settings import CallbackSettings


def build_sms_sender(settings: CallbackSettings, *, client: httpx.AsyncClient) -> SmsSender:
    """The SMS provider `RINGBACK_SMS_PROVIDER` names."""
    if settings.sms_provider == "http":
        assert settings.sms_http_url  # checked by the settings validator
        return HttpSmsSender(client=client, url=settings.sms_http_url, sender=settings.sms_sender)
    if settings.sms_provider == "twilio":
        sid, token, sender = (
            settings.sms_twilio_account_sid,
            settings.sms_twilio_auth_token,
            settings.sms_twilio_from,
        )
        # All three are checked by the settings validator.
        assert sid
        assert token
        assert sender
        return TwilioSmsSender(
            client=client,
            base_url=settings.sms_twilio_base_url,
            account_sid=sid,
            auth_token=token.get_secret_value(),
            sender=sender,
        )
    return FileSmsSender(directory=settings.sink_dir, sender=settings.sms_sender)


def build_email_sender(settings: CallbackSettings) -> EmailSender:
    """The email provider `RINGBACK_EMAIL_PROVIDER` names."""
    if settings.email_provider == "smtp":
        assert settings.smtp_host  # checked by the settings validator
        password = settings.smtp_password
        return SmtpEmailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
    return FileEmailSender(directory=settings.sink_dir, sender=settings.email_from)
