"""Every text callback sends or shows, read from one gettext catalog (`.po`) per language."""

from __future__ import annotations

import argparse
import functools
import io
import string
import sys
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from shared.vocabulary import LANGUAGES, Language

DOMAIN: Final = "messages"
# The language every other catalog is compared with: its texts name the fields a message takes.
SOURCE_LANGUAGE: Final[Language] = "en"
# How the source names a message, so the check can find every one it uses:
# `translate(language, "id", ...)` in Python, `N_("id")` for an id kept in a table, and
# `_("id")` in a page template.
KEYWORDS: Final[dict[str, tuple[int, ...] | None]] = {"translate": (2,), "N_": None, "_": None}
_SOURCES: Final = [("**.py", "python"), ("web/templates/**.html", "jinja2.ext:babel_extract")]
_PACKAGE_DIR: Final = Path(__file__).resolve().parent


def N_(message_id: str) -> str:
    """Mark a message id kept in a table; it is looked up where it is used."""
    return message_id


def locales_dir() -> Traversable:
    return resources.files("services.callback") / "locales"


def catalog_path(root: Traversable | Path, language: str) -> Traversable | Path:
    return root / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str, root: Traversable | Path | None = None) -> Catalog:
    with catalog_path(root or locales_dir(), language).open("rb") as file:
        return read_po(file, locale=language, domain=DOMAIN)


@functools.cache
def translations(language: Language) -> Translations:
    """The catalog of `language`, compiled in memory at first use: no `.mo` file to build or ship.

    A message a catalog lacks (or marks fuzzy) falls back to English rather than show its id;
    the check keeps that from happening in the first place.
    """
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(language))
    buffer.seek(0)
    loaded = Translations(buffer, domain=DOMAIN)
    if language != SOURCE_LANGUAGE:
        loaded.add_fallback(translations(SOURCE_LANGUAGE))
    return loaded


def translate(language: Language, message_id: str, /, **fields: object) -> str:
    """The text of `message_id` in `language`, with its `{fields}` filled in."""
    return translations(language).gettext(message_id).format(**fields)


# ----------------------------------------------------------------------------- the check


def used_message_ids(source: Path = _PACKAGE_DIR) -> set[str]:
    """Every message id the code and the page templates under `source` use."""
    return {
        message
        for _, _, message, _, _ in extract_from_dir(str(source), _SOURCES, keywords=KEYWORDS)
        if isinstance(message, str)
    }


def _fields(text: str) -> set[str] | None:
    """The `{names}` a text fills in, or None if its braces do not parse."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return None
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in parsed if name is not None}


def _texts(catalog: Catalog) -> dict[str, Message]:
    return {
        message.id: message for message in catalog if isinstance(message.id, str) and message.id
    }


def _languages_on_disk(root: Traversable | Path) -> set[str]:
    return {entry.name for entry in root.iterdir() if entry.is_dir()}


def catalog_problems(
    root: Traversable | Path | None = None, used: Iterable[str] | None = None
) -> list[str]:
    """What is wrong with the catalogs under `root`: one line per problem, none when all is well.

    Each language of `Language` needs a catalog with every message the source uses, translated
    (not empty, not fuzzy) with the same `{fields}` as English, and nothing the source no longer
    uses; a catalog for a language `Language` does not list is a language half added.
    """
    root = root or locales_dir()
    wanted = set(used_message_ids() if used is None else used)
    problems = [
        f"{stray}: a catalog for a language that shared.vocabulary.Language does not list"
        for stray in sorted(_languages_on_disk(root) - set(LANGUAGES))
    ]
    catalogs: dict[Language, dict[str, Message]] = {}
    for language in LANGUAGES:
        if not catalog_path(root, language).is_file():
            problems.append(f"{language}: no catalog at {language}/LC_MESSAGES/{DOMAIN}.po")
            continue
        catalogs[language] = _texts(read_catalog(language, root))
    source = catalogs.get(SOURCE_LANGUAGE, {})
    for language, texts in catalogs.items():
        problems += [f"{language}: missing message {mid!r}" for mid in sorted(wanted - set(texts))]
        problems += [
            f"{language}: message {mid!r} is not used by the source (remove it)"
            for mid in sorted(set(texts) - wanted)
        ]
        for mid in sorted(wanted & set(texts)):
            message = texts[mid]
            if message.fuzzy:
                problems.append(f"{language}: message {mid!r} is marked fuzzy")
            if not isinstance(message.string, str) or not message.string.strip():
                problems.append(f"{language}: message {mid!r} has no translation")
                continue
            fields = _fields(message.string)
            expected = _fields(str(source[mid].string)) if mid in source else fields
            if fields is None:
                problems.append(f"{language}: message {mid!r} has unbalanced braces")
            elif fields != expected:
                problems.append(
                    f"{language}: message {mid!r} fills in {sorted(fields)}, "
                    f"but {SOURCE_LANGUAGE} fills in {sorted(expected or ())}"
                )
    return problems


def check(root: Traversable | Path | None = None) -> list[str]:
    """Every catalog complete, and every SMS within its budget in every language."""
    # `templates` reads its words from this module, so it is imported only when checking.
    from services.callback.templates import sms_budget_problems

    return catalog_problems(root) + sms_budget_problems()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.callback.catalogs",
        description="Check the message catalogs: every message in every language, and the "
        "SMS length budget with the longest realistic input.",
    )
    parser.add_argument("--check", action="store_true", required=True)
    parser.parse_args(argv)
    problems = check()
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    if problems:
        sys.stderr.write(f"{len(problems)} problem(s) in the message catalogs\n")
        return 1
    sys.stdout.write(f"message catalogs complete: {', '.join(LANGUAGES)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
