"""The TwiML a caller waiting in a Twilio queue hears (§11): hold music, the callback offer
(`<Gather numDigits="1">`) and the confirmation that lets them leave the queue.

Built with ElementTree like `shared.twiml`, so every attribute and text is escaped.
"""

from __future__ import annotations

import functools
import io
import math
import string
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

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

# What the caller hears is a translation like every other text (CONVENTIONS: gettext with
# Babel): one catalog per spoken language under `shared/locales`, compiled in memory at first
# use. Adding a language is its catalog and its voice above.
DOMAIN = "spoken"
SOURCE_LANGUAGE: Spoken = "en"
# The message ids the TwiML speaks. {minutes}: the estimate rounded up to whole minutes. The
# `.soon` forms are said when no plan or roster tells when agents work, so no time can
# honestly be named.
MESSAGE_IDS = (
    "wait.offer",
    "wait.offer.soon",
    "wait.done",
    "wait.done.soon",
    "wait.sorry",
    "voicemail.prompt",
)


def locales_dir() -> Traversable:
    return resources.files("shared") / "locales"


def read_catalog(language: str, root: Traversable | Path | None = None) -> Catalog:
    path = (root or locales_dir()) / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as file:
        return read_po(file, locale=language, domain=DOMAIN)


@functools.cache
def _translations(language: Spoken) -> Translations:
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(language))
    buffer.seek(0)
    loaded = Translations(buffer, domain=DOMAIN)
    if language != SOURCE_LANGUAGE:
        loaded.add_fallback(_translations(SOURCE_LANGUAGE))
    return loaded


def spoken(language: Spoken, message_id: str, /, **fields: object) -> str:
    """The text of `message_id` in `language`, with its `{fields}` filled in."""
    return _translations(language).gettext(message_id).format(**fields)


def catalog_problems(root: Traversable | Path | None = None) -> list[str]:
    """Each spoken language's catalog has every message, translated, with English's fields."""
    problems: list[str] = []
    source = read_catalog(SOURCE_LANGUAGE, root)
    for language in VOICES:
        catalog = read_catalog(language, root)
        texts = {m.id: m for m in catalog if isinstance(m.id, str) and m.id}
        for message_id in MESSAGE_IDS:
            message = texts.get(message_id)
            if message is None or not isinstance(message.string, str) or not message.string:
                problems.append(f"{language}: message {message_id!r} is missing or empty")
                continue
            if message.fuzzy:
                problems.append(f"{language}: message {message_id!r} is marked fuzzy")
            english = source[message_id]
            if english is not None and _fields(message.string) != _fields(str(english.string)):
                problems.append(f"{language}: message {message_id!r} fills in other fields")
        problems += [
            f"{language}: message {extra!r} is not spoken (remove it)"
            for extra in sorted(set(texts) - set(MESSAGE_IDS))
        ]
    return problems


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def minutes_until(moment: datetime | None, now: datetime) -> int | None:
    """Whole minutes, rounded up and at least 2 (no "about 0 minutes"); None: no estimate."""
    if moment is None:
        return None
    return max(2, math.ceil((moment - now).total_seconds() / 60))


def _text(language: Spoken, key: str, minutes: int | None) -> str:
    if minutes is None:
        return spoken(language, f"{key}.soon")
    return spoken(language, key, minutes=minutes)


def _document(root: ET.Element) -> bytes:
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return document


def say_into(parent: ET.Element, language: Spoken, text: str) -> None:
    """`<Say>` `text` in `language`'s voice."""
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
    say_into(gather, language, _text(language, "wait.offer", minutes))
    _hold_into(root, music_url)
    return _document(root)


def leave(*, language: Spoken, minutes: int | None) -> bytes:
    """The callback is booked: say when, and leave the queue (`QueueResult=leave`)."""
    root = ET.Element("Response")
    say_into(root, language, _text(language, "wait.done", minutes))
    ET.SubElement(root, "Leave")
    return _document(root)


def sorry(*, language: Spoken, music_url: str | None) -> bytes:
    """The request could not be stored: say so, and stay in the queue."""
    root = ET.Element("Response")
    say_into(root, language, spoken(language, "wait.sorry"))
    _hold_into(root, music_url)
    return _document(root)
