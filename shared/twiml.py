"""The TwiML of a dial (§10) and the intake URLs Twilio reports to, written once for both
callback (which asks Twilio to ring the agent) and intake (which answers Twilio's requests).

Built with the standard library's ElementTree, so every attribute and text is escaped.
"""

from __future__ import annotations

from typing import Literal
from xml.etree import ElementTree as ET

MEDIA_TYPE = "text/xml"

# Intake's routes for a dial's reports (paths under the public base URL).
DIAL_RESULT_ROUTE = "/v1/webhooks/twilio/dial/{dial_id}"
DIAL_STATUS_ROUTE = "/v1/webhooks/twilio/dial/{dial_id}/status"
DIAL_CONNECT_ROUTE = "/v1/webhooks/twilio/dial/{dial_id}/connect"

# Twilio's leg progress events we ask for: ringing and answered drive the console live.
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
# Seconds the agent has to press 1 after the whisper.
CONFIRM_SECONDS = 8


def dial_url(
    base: str, route: str, dial_id: str, leg: Literal["agent", "customer"] | None = None
) -> str:
    url = base.rstrip("/") + route.format(dial_id=dial_id)
    return f"{url}?leg={leg}" if leg else url


def _document(root: ET.Element) -> bytes:
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return document


def agent_whisper(*, base: str, dial_id: str, whisper: str, language: str) -> bytes:
    """The agent's leg: who is about to be called, and "press 1". Without the 1 (their own
    voicemail answered, or they let it be), the call ends and no customer is rung."""
    root = ET.Element("Response")
    gather = ET.SubElement(
        root,
        "Gather",
        numDigits="1",
        timeout=str(CONFIRM_SECONDS),
        method="POST",
        action=dial_url(base, DIAL_CONNECT_ROUTE, dial_id),
    )
    ET.SubElement(gather, "Say", language=language).text = whisper
    ET.SubElement(root, "Hangup")
    return _document(root)


def bridge(
    *,
    base: str,
    dial_id: str,
    customer_phone: str,
    caller_id: str,
    machine_detection: bool,
    ring_seconds: int,
) -> bytes:
    """The agent pressed 1: ring the customer, showing the queue's number."""
    root = ET.Element("Response")
    dial = ET.SubElement(
        root,
        "Dial",
        callerId=caller_id,
        timeout=str(ring_seconds),
        method="POST",
        action=dial_url(base, DIAL_RESULT_ROUTE, dial_id),
    )
    status = dial_url(base, DIAL_STATUS_ROUTE, dial_id, "customer")
    attributes = {
        "statusCallback": status,
        "statusCallbackEvent": " ".join(STATUS_EVENTS),
        "statusCallbackMethod": "POST",
    }
    if machine_detection:
        # Off unless the queue asks: the customer hears silence while the line decides.
        attributes |= {"machineDetection": "Enable", "amdStatusCallback": status}
    ET.SubElement(dial, "Number", attributes).text = customer_phone
    return _document(root)


def say_and_hang_up(text: str, language: str) -> bytes:
    root = ET.Element("Response")
    ET.SubElement(root, "Say", language=language).text = text
    ET.SubElement(root, "Hangup")
    return _document(root)


def hang_up() -> bytes:
    root = ET.Element("Response")
    ET.SubElement(root, "Hangup")
    return _document(root)
