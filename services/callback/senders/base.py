"""The interface every SMS and email provider implements, and how failures are classified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SendError(Exception):
    """The provider did not take the message; `permanent` says whether trying again can help."""

    permanent: bool = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TransientSendError(SendError):
    """Network trouble, timeouts, 5xx, 408, 429: the same message may succeed later."""

    permanent = False


class PermanentSendError(SendError):
    """The provider refused the message itself (bad number, bad credentials): do not retry."""

    permanent = True


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider acknowledged."""

    provider: str
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """One SMS; `notification_id` is the idempotency key every provider passes on."""

    notification_id: str
    to: str
    text: str
    # A number of our own for this message (a survey's, which customers reply to); None: the
    # provider's configured sender.
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One plain-text email; `notification_id` becomes its Message-ID."""

    notification_id: str
    to: str
    subject: str
    body: str


class SmsSender(Protocol):
    name: str

    async def send_sms(self, message: OutgoingSms) -> SendResult: ...


class EmailSender(Protocol):
    name: str

    async def send_email(self, message: OutgoingEmail) -> SendResult: ...


def classify_http_status(status: int) -> type[SendError] | None:
    """None for success; the error class for a failed HTTP answer (DESIGN §8)."""
    if 200 <= status < 300:
        return None
    if 400 <= status < 500 and status not in (408, 429):
        return PermanentSendError
    return TransientSendError
