"""Realistic provider payloads, shaped after what Twilio and CTI helpdesks send."""

from __future__ import annotations

import secrets
from typing import Any

CUSTOMER = "+358401234567"
OUR_NUMBER = "+358942451000"
AGENT = "+358501112222"
ACCOUNT = "AC" + "3f" * 16


def sid(prefix: str = "CA") -> str:
    return prefix + secrets.token_hex(16)


def _common(call_sid: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "Called": OUR_NUMBER,
        "CalledCountry": "FI",
        "Caller": CUSTOMER,
        "CallerCountry": "FI",
        "To": OUR_NUMBER,
        "ToCountry": "FI",
        "From": CUSTOMER,
        "FromCountry": "FI",
    }


def twilio_inbound_status(call_sid: str, status: str, **extra: str) -> dict[str, str]:
    """A status callback on the inbound (parent) call."""
    params = _common(call_sid) | {
        "CallStatus": status,
        "Direction": "inbound",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "3",
        "Timestamp": "Tue, 24 Nov 2026 12:00:41 +0000",
        "CallDuration": "41" if status == "completed" else "0",
    }
    return params | extra


def twilio_voice_request(call_sid: str, **extra: str) -> dict[str, str]:
    """The first request of an inbound call (the Voice URL), ringing."""
    return _common(call_sid) | {"CallStatus": "ringing", "Direction": "inbound"} | extra


def twilio_dial_action(call_sid: str, dial_status: str, **extra: str) -> dict[str, str]:
    """The `<Dial action>` request, on the parent call, when the Dial ends."""
    params = _common(call_sid) | {
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "DialCallSid": sid(),
        "DialCallStatus": dial_status,
        "DialCallDuration": "0" if dial_status != "completed" else "95",
        "DialBridged": "false" if dial_status != "completed" else "true",
    }
    return params | extra


def twilio_child_status(
    child_sid: str, parent_sid: str, status: str, **extra: str
) -> dict[str, str]:
    """A status callback of the leg Twilio dialled to an agent (`To` is the agent)."""
    params = {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "CallSid": child_sid,
        "ParentCallSid": parent_sid,
        "Direction": "outbound-dial",
        "From": OUR_NUMBER,
        "To": AGENT,
        "Called": AGENT,
        "Caller": OUR_NUMBER,
        "CallStatus": status,
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "2",
        "Timestamp": "Tue, 24 Nov 2026 12:00:30 +0000",
        "CallDuration": "0",
    }
    return params | extra


def twilio_enqueue_action(call_sid: str, result: str, **extra: str) -> dict[str, str]:
    """The `<Enqueue action>` request when the caller leaves the queue."""
    params = _common(call_sid) | {
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "QueueResult": result,
        "QueueSid": sid("QU"),
        "QueueTime": "35",
    }
    return params | extra


def cti(event: str, call_id: str, **extra: Any) -> dict[str, Any]:
    """A generic CTI event; the helpdesk example from docs/providers.md by default."""
    payload: dict[str, Any] = {
        "event": event,
        "from": "0401234567",
        "to": "0942451000",
        "direction": "in",
        "callId": call_id,
        "user": "Emma Taylor",
    }
    if event == "hangup":
        payload["cause"] = "noAnswer"
    if event == "answer":
        payload["answeringNumber"] = "0501112222"
    payload.update(extra)
    return payload
