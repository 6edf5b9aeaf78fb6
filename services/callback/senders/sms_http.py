"""The generic JSON SMS gateway (DESIGN §8): ours to define, simple to put in front of anything."""

from __future__ import annotations

from typing import Any

import httpx

from services.callback.senders.base import (
    OutgoingSms,
    SendResult,
    TransientSendError,
    classify_http_status,
)
from shared.jsonutil import dumps


class HttpSmsSender:
    """POSTs `{"to","text","reference","sender"?}` with `Idempotency-Key: <notification id>`."""

    name = "http"

    def __init__(self, *, client: httpx.AsyncClient, url: str, sender: str | None = None) -> None:
        self._client = client
        self._url = url
        self._sender = sender

    async def send_sms(self, message: OutgoingSms) -> SendResult:
        body: dict[str, Any] = {
            "to": message.to,
            "text": message.text,
            "reference": message.notification_id,
        }
        sender = message.sender or self._sender
        if sender:
            body["sender"] = sender
        try:
            response = await self._client.post(
                self._url,
                # orjson, not httpx's `json=` (the standard library's encoder): one per SMS.
                content=dumps(body),
                headers={
                    "Idempotency-Key": message.notification_id,
                    "content-type": "application/json",
                },
            )
        except httpx.HTTPError as exc:
            raise TransientSendError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        error = classify_http_status(response.status_code)
        if error is not None:
            raise error(f"HTTP {response.status_code}: {response.text[:300]}")
        return SendResult(provider=self.name, message_id=_message_id(response))


def _message_id(response: httpx.Response) -> str | None:
    """The gateway's id for the message, if its answer names one."""
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("id", "message_id", "messageId", "sid"):
            value = data.get(key)
            if isinstance(value, str | int):
                return str(value)[:200]
    return None
