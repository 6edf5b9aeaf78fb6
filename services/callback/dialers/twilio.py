"""Agent first through Twilio's Calls API: ring the agent with a whisper, then the customer."""

from __future__ import annotations

import httpx

from services.callback.dialers.base import DialRequest, FateUnknown, NotPlaced, post, refused
from shared import twiml


class TwilioDialer:
    """`POST {base}/2010-04-01/Accounts/{sid}/Calls.json`, form-encoded, basic auth."""

    name = "twilio"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        account_sid: str,
        auth_token: str,
        public_base_url: str,
        ring_seconds: int,
        whisper: str,
        whisper_language: str,
    ) -> None:
        self._client = client
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Calls.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._public = public_base_url
        self._ring_seconds = ring_seconds
        self._whisper = whisper
        self._language = whisper_language

    async def place(self, request: DialRequest) -> str | None:
        to = request.agent_phone or (f"sip:{request.agent_sip}" if request.agent_sip else None)
        if to is None:
            raise NotPlaced("the agent has neither a phone number nor a SIP address")
        if to.startswith("sip:sip:"):
            to = to[4:]
        form: dict[str, str | list[str]] = {
            "To": to,
            # The agent sees the queue's number too: they know which line is calling.
            "From": request.caller_id,
            "Twiml": twiml.agent_whisper(
                base=self._public,
                dial_id=request.dial_id,
                whisper=self._whisper,
                language=self._language,
            ).decode(),
            "Timeout": str(self._ring_seconds),
            "StatusCallback": twiml.dial_url(
                self._public, twiml.DIAL_STATUS_ROUTE, request.dial_id, "agent"
            ),
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": list(twiml.STATUS_EVENTS),
        }
        response = await post(self._client, self._url, data=form, auth=self._auth)
        data: object = None
        try:
            data = response.json()
        except ValueError:
            data = None
        body = data if isinstance(data, dict) else {}
        if response.status_code >= 400:
            raise refused(response, code=body.get("code"))
        sid = body.get("sid")
        if not isinstance(sid, str):
            # Accepted, yet no call id: the call may exist without our knowing its id.
            raise FateUnknown("the phone system accepted the request but named no call")
        return sid[:64]
