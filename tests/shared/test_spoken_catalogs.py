"""The texts the phone speaks (§11) come from one gettext catalog per spoken language."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

from shared import twiml_wait


def test_every_spoken_language_has_every_message() -> None:
    assert twiml_wait.catalog_problems() == []


@pytest.mark.parametrize(
    ("language", "minutes", "words"),
    [("fi", 12, "noin 12 minuuttia"), ("sv", 12, "cirka 12 minuter"), ("en", 12, "about 12")],
)
def test_the_offer_speaks_the_catalogs_text(
    language: twiml_wait.Spoken, minutes: int, words: str
) -> None:
    document = twiml_wait.offer(
        action="https://x/p", language=language, minutes=minutes, music_url=None
    )
    assert words in document.decode()


@pytest.fixture
def locales(tmp_path: Path) -> Path:
    root = tmp_path / "locales"
    shutil.copytree(str(twiml_wait.locales_dir()), root)
    return root


def _edit(root: Path, language: str, message_id: str, string: str | None) -> None:
    path = root / language / "LC_MESSAGES" / "spoken.po"
    with path.open("rb") as file:
        catalog = read_po(file, locale=language)
    if string is None:
        catalog.delete(message_id)
    else:
        message = catalog[message_id]
        assert message is not None
        message.string = string
    with path.open("wb") as file:
        write_po(file, catalog)


def test_the_check_names_a_missing_message(locales: Path) -> None:
    _edit(locales, "sv", "voicemail.prompt", None)
    assert twiml_wait.catalog_problems(locales) == [
        "sv: message 'voicemail.prompt' is missing or empty"
    ]


def test_the_check_names_a_text_that_drops_its_minutes(locales: Path) -> None:
    _edit(locales, "fi", "wait.offer", "Paina 1.")
    assert twiml_wait.catalog_problems(locales) == [
        "fi: message 'wait.offer' fills in other fields"
    ]
