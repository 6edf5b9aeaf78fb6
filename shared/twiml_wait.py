"""The TwiML a caller waiting in a Twilio queue hears (§11): hold music, the callback offer
(`<Gather numDigits="1">`) and the confirmation that lets them leave the queue.

Built with ElementTree like `shared.twiml`, so every attribute and text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

from shared.twiml import MEDIA_TYPE as MEDIA_TYPE

WAIT_ROUTE = "/v1/twiml/wait"
PRESS_ROUTE = "/v1/twiml/wait/press"
# Seconds the caller has to press a key once the offer has been said.
PRESS_SECONDS = 6
# Without hold music configured, silence in pieces this long (Twilio asks again after each).
PAUSE_SECONDS = 20

Spoken = Literal["fi", "sv", "en"]


@dataclass(frozen=True, slots=True)
class Voice:
    language: str
    voice: str


# One voice per language the offer is spoken in (Twilio's Amazon Polly voices).
VOICES: dict[Spoken, Voice] = {
    "fi": Voice("fi-FI", "Polly.Suvi"),
    "sv": Voice("sv-SE", "Polly.Astrid"),
    "en": Voice("en-GB", "Polly.Amy"),
}

# {minutes}: the estimate rounded up to whole minutes. The `_soon` forms are said when no
# plan or roster tells when agents work, so no time can honestly be named.
_TEXTS: dict[Spoken, dict[str, str]] = {
    "fi": {
        "offer": (
            "Arvioitu odotusaika on noin {minutes} minuuttia. Paina 1, niin soitamme sinulle "
            "takaisin, etkä menetä paikkaasi jonossa."
        ),
        "offer_soon": (
            "Paina 1, niin soitamme sinulle takaisin mahdollisimman pian, etkä menetä "
            "paikkaasi jonossa."
        ),
        "done": (
            "Kiitos. Soitamme sinulle noin {minutes} minuutin kuluttua. Saat vahvistuksen "
            "tekstiviestinä. Voit nyt sulkea puhelimen."
        ),
        "done_soon": (
            "Kiitos. Soitamme sinulle mahdollisimman pian. Saat vahvistuksen tekstiviestinä. "
            "Voit nyt sulkea puhelimen."
        ),
        "sorry": "Pahoittelemme, takaisinsoiton tilaus ei onnistunut. Pysy linjalla.",
    },
    "sv": {
        "offer": (
            "Den beräknade väntetiden är cirka {minutes} minuter. Tryck 1 så ringer vi upp "
            "dig utan att du förlorar din plats i kön."
        ),
        "offer_soon": (
            "Tryck 1 så ringer vi upp dig så snart som möjligt, utan att du förlorar din "
            "plats i kön."
        ),
        "done": (
            "Tack. Vi ringer upp dig om cirka {minutes} minuter. Du får en bekräftelse per "
            "sms. Du kan lägga på nu."
        ),
        "done_soon": (
            "Tack. Vi ringer upp dig så snart som möjligt. Du får en bekräftelse per sms. "
            "Du kan lägga på nu."
        ),
        "sorry": "Tyvärr kunde vi inte boka en återuppringning. Stanna kvar i linjen.",
    },
    "en": {
        "offer": (
            "The expected wait is about {minutes} minutes. Press 1 and we will call you back "
            "without losing your place."
        ),
        "offer_soon": (
            "Press 1 and we will call you back as soon as we can, without losing your place."
        ),
        "done": (
            "Thank you. We will call you back in about {minutes} minutes. A text message "
            "will confirm it. You can hang up now."
        ),
        "done_soon": (
            "Thank you. We will call you back as soon as we can. A text message will confirm "
            "it. You can hang up now."
        ),
        "sorry": "Sorry, we could not book the callback. Please stay on the line.",
    },
}


def minutes_until(moment: datetime | None, now: datetime) -> int | None:
    """Whole minutes, rounded up and at least 2 (no "about 0 minutes"); None: no estimate."""
    if moment is None:
        return None
    return max(2, math.ceil((moment - now).total_seconds() / 60))


def _text(language: Spoken, key: str, minutes: int | None) -> str:
    if minutes is None:
        return _TEXTS[language][f"{key}_soon"]
    return _TEXTS[language][key].format(minutes=minutes)


def _document(root: ET.Element) -> bytes:
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return document


def _say(parent: ET.Element, language: Spoken, text: str) -> None:
    voice = VOICES[language]
    ET.SubElement(parent, "Say", language=voice.language, voice=voice.voice).text = text


def _hold_into(root: ET.Element, music_url: str | None) -> None:
    if music_url:
        ET.SubElement(root, "Play").text = music_url
    else:
        ET.SubElement(root, "Pause", length=str(PAUSE_SECONDS))


def hold(music_url: str | None) -> bytes:
    """Hold music and nothing else: the caller stays in the queue (Twilio asks again after)."""
    root = ET.Element("Response")
    _hold_into(root, music_url)
    return _document(root)


def press_url(
    base: str,
    *,
    queue: str,
    queued_at: datetime,
    language: Spoken,
    estimate: datetime | None,
    tries: int,
) -> str:
    """The Gather's absolute action URL: everything the press needs, inside Twilio's signature."""
    query = {"queue": queue, "queued_at": queued_at.isoformat(), "lang": language}
    if estimate is not None:
        query["estimate"] = estimate.isoformat()
    if tries:
        query["tries"] = str(tries)
    return f"{base.rstrip('/')}{PRESS_ROUTE}?{urlencode(query)}"


def offer(*, action: str, language: Spoken, minutes: int | None, music_url: str | None) -> bytes:
    """The estimate and "press 1"; hold music after it if the caller presses nothing."""
    root = ET.Element("Response")
    gather = ET.SubElement(
        root,
        "Gather",
        numDigits="1",
        timeout=str(PRESS_SECONDS),
        method="POST",
        action=action,
    )
    _say(gather, language, _text(language, "offer", minutes))
    _hold_into(root, music_url)
    return _document(root)


def leave(*, language: Spoken, minutes: int | None) -> bytes:
    """The callback is booked: say when, and leave the queue (`QueueResult=leave`)."""
    root = ET.Element("Response")
    _say(root, language, _text(language, "done", minutes))
    ET.SubElement(root, "Leave")
    return _document(root)


def sorry(*, language: Spoken, music_url: str | None) -> bytes:
    """The request could not be stored: say so, and stay in the queue."""
    root = ET.Element("Response")
    _say(root, language, _TEXTS[language]["sorry"])
    _hold_into(root, music_url)
    return _document(root)
