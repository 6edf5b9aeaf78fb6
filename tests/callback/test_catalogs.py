"""The message catalogs: every language has every message, and every SMS fits in every language."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

from services.callback.catalogs import (
    catalog_problems,
    check,
    locales_dir,
    main,
    translate,
    used_message_ids,
)
from services.callback.templates import SMS_MAX_CHARS, sms_budget_problems
from shared.vocabulary import LANGUAGES


def test_every_catalog_is_complete_and_every_sms_fits_its_budget() -> None:
    # What `make lint` runs, so `make test` holds the same line.
    assert check() == []
    assert main(["--check"]) == 0


def test_the_source_uses_the_texts_of_messages_and_of_the_page() -> None:
    used = used_message_ids()
    # Found in Python calls, in tables marked with N_(), and in the page templates.
    assert {"confirmation.sms", "when.asap.today", "page.status.pending", "page.title"} <= used


@pytest.fixture
def locales(tmp_path: Path) -> Path:
    """A copy of the catalogs to break."""
    root = tmp_path / "locales"
    shutil.copytree(str(locales_dir()), root)
    return root


def edit(root: Path, language: str, message_id: str, **changes: object) -> None:
    path = root / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as file:
        catalog = read_po(file, locale=language)
    if changes.get("delete"):
        catalog.delete(message_id)
    else:
        message = catalog[message_id]
        assert message is not None
        if "string" in changes:
            message.string = str(changes["string"])
        if changes.get("fuzzy"):
            message.flags.add("fuzzy")
    with path.open("wb") as file:
        write_po(file, catalog)


def test_the_check_fails_on_a_catalog_missing_a_message(locales: Path) -> None:
    assert catalog_problems(locales) == []
    edit(locales, "et", "confirmation.sms", delete=True)

    assert catalog_problems(locales) == ["et: missing message 'confirmation.sms'"]


def test_the_check_fails_on_an_empty_fuzzy_or_mistyped_translation(locales: Path) -> None:
    edit(locales, "fi", "page.title", string="")
    edit(locales, "sv", "page.title", fuzzy=True)
    # A translation that lost the link: the SMS would go out without it.
    edit(locales, "et", "reminder.sms", string="{hello} Meeldetuletus: helistame teile {when}.")

    problems = catalog_problems(locales)

    assert "fi: message 'page.title' has no translation" in problems
    assert "sv: message 'page.title' is marked fuzzy" in problems
    assert (
        "et: message 'reminder.sms' fills in ['hello', 'when'], "
        "but en fills in ['hello', 'link', 'when']"
    ) in problems
    assert len(problems) == 3


def test_the_check_fails_on_a_language_half_added(locales: Path) -> None:
    # A catalog for a language that `Language` does not list yet.
    shutil.copytree(locales / "et", locales / "lv")
    # And a language of ours whose catalog is gone.
    shutil.rmtree(locales / "sv")

    problems = catalog_problems(locales)

    assert problems[0].startswith("lv: a catalog for a language that")
    assert "sv: no catalog at sv/LC_MESSAGES/messages.po" in problems


def test_the_check_fails_on_a_message_the_source_no_longer_uses(locales: Path) -> None:
    problems = catalog_problems(locales, used=used_message_ids() - {"tried.subject"})
    assert problems == [
        f"{language}: message 'tried.subject' is not used by the source (remove it)"
        for language in LANGUAGES
    ]


def test_the_sms_budget_is_checked_with_the_longest_realistic_input() -> None:
    assert sms_budget_problems() == []
    # The longest confirmation comes close to the budget in every language: the worst case
    # really is the worst (a 20-character first name, the longest date, an ordinary link).
    tight = sms_budget_problems(max_chars=SMS_MAX_CHARS - 30)
    assert {problem.split(":")[0] for problem in tight} == set(LANGUAGES)
    assert any("the confirmation SMS does not fit" in problem for problem in tight)


def test_every_language_has_its_own_words() -> None:
    greetings = {translate(language, "greeting.sms", name="Mari") for language in LANGUAGES}
    assert greetings == {"Hei Mari!", "Hej Mari!", "Hi Mari!", "Tere, Mari!"}
