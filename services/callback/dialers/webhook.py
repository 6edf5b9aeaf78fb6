"""Any PBX: a Standard-Webhooks-signed `dial.requested`, which it answers by ringing the agent
and then the customer, reporting each leg to intake's `POST /v1/webhooks/dialer`."""

from __future__ import annotations

import time
from typing import Any

import httpx

from services.callback.dialers.base import DialRequest, FateUnknown, post, refused
from shared import standard_webhooks
from shared.jsonutil import dumps

DIALER_REPORT_ROUTE = "/v1/webhooks/dialer"


class WebhookDialer:
    name = "webhook"

    def __init__(
        self, *, client: httpx.AsyncClient, url: str, secret: str, public_base_url: str
    ) -> None:
        self._client = client
        self._url = url
        self._secret = secret
        self._report_to = public_base_url.rstrip("/") + DIALER_REPORT_ROUTE

    def message(self, request: DialRequest) -> dict[str, Any]:
        """The `dial.requested` body (docs/api.md, dialing)."""
        return {
            "type": "dial.requested",
            "dial_id": request.dial_id,
            "callback_id": request.callback_id,
            "agent": {
                "id": request.agent_id,
                "phone": request.agent_phone,
                "sip": request.agent_sip,
            },
            "customer_phone": request.customer_phone,
            "caller_id": request.caller_id,
            "machine_detection": request.machine_detection,
            "report_to": self._report_to,
        }

    async def place(self, request: DialRequest) -> str | None:
        body = dumps(self.message(request))
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            # The dial's id: a PBX that gets the message twice can tell it is one dial.
            "webhook-id": request.dial_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard_webhooks.sign(self._secret, request.dial_id, stamp, body),
        }
        response = await post(self._client, self._url, content=body, headers=headers)
        if response.status_code >= 400:
            raise refused(response)
        try:
            data = response.json()
        except ValueError:
            return None
        call_id = data.get("call_id") if isinstance(data, dict) else None
        if call_id is not None and not isinstance(call_id, str):
            raise FateUnknown("the PBX answered with a call id that is not text")
        return call_id[:64] if call_id else None
