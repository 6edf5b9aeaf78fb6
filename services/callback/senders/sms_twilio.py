"""Twilio's Messages API, or anything speaking it (DESIGN §8)."""

from __future__ import annotations

import httpx

from services.callback.senders.base import (
    OutgoingSms,
    SendResult,
    TransientSendError,
    classify_http_status,
)


class TwilioSmsSender:
    """`POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded, basic auth."""

    name = "twilio"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
    ) -> None:
        self._client = client
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._sender = sender

    async def send_sms(self, message: OutgoingSms) -> SendResult:
        try:
            response = await self._client.post(
                self._url,
                data={
                    "To": message.to,
                    "From": message.sender or self._sender,
                    "Body": message.text,
                },
                auth=self._auth,
                # Twilio itself ignores it; compatible gateways may use it to drop a re-send.
                headers={"Idempotency-Key": message.notification_id},
            )
        except httpx.HTTPError as exc:
            raise TransientSendError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        error = classify_http_status(response.status_code)
        if error is not None:
            raise error(f"HTTP {response.status_code}: {response.text[:300]}")
        sid: str | None = None
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("sid"), str):
            sid = data["sid"][:200]
        return SendResult(provider=self.name, message_id=sid)
