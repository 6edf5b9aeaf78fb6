"""Email over SMTP with aiosmtplib; STARTTLS optional."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from services.callback.senders.base import (
    OutgoingEmail,
    PermanentSendError,
    SendResult,
    TransientSendError,
)


def build_message(message: OutgoingEmail, *, sender: str) -> EmailMessage:
    """The RFC 5322 message: UTF-8 plain text, Message-ID derived from the notification id.

    A re-send after a worker died mid-send carries the same Message-ID, so a mail system
    (or a person) can recognise it as the same message.
    """
    domain = parseaddr(sender)[1].rpartition("@")[2] or "ringback.invalid"
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = f"<notification.{message.notification_id}@{domain}>"
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.body, charset="utf-8")
    return email


class SmtpEmailSender:
    """Sends each message on its own connection; volumes are small and this survives restarts."""

    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout

    async def send_email(self, message: OutgoingEmail) -> SendResult:
        email = build_message(message, sender=self._sender)
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout,
        )
        try:
            async with client:
                try:
                    await client.send_message(email)
                except asyncio.CancelledError:
                    # Cancelled (the worker's grace period is over): drop the connection now.
                    # A polite QUIT would first wait for the server's answer to the message,
                    # holding the worker's exit hostage to a slow server.
                    client.close()
                    raise
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [response.code for response in exc.recipients]
            if codes and all(500 <= code < 600 for code in codes):
                raise PermanentSendError(f"recipient refused: {codes}") from exc
            raise TransientSendError(f"recipient deferred: {codes}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            detail = f"SMTP {exc.code}: {exc.message[:300]}"
            if 500 <= exc.code < 600:
                raise PermanentSendError(detail) from exc
            raise TransientSendError(detail) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientSendError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        return SendResult(provider=self.name, message_id=str(email["Message-ID"]))
