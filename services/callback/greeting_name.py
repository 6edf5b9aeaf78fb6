"""Which customer names our SMS and email may greet by: a conservative allow-list.

Whoever posts a contact request or a webhook chooses the name, and the greeting copies it into
a message we send from our own number and mail server. A review (issue #14) got "Hi
evil.example/pay!" into an SMS and "Hei Buy cheap pills at http://spam.example" into an email.
So a name is greeted only when every character is one that names are written with, and anything
else (a link, a domain, an address, a number, markup, an emoji, a control character) gets the
nameless greeting instead. Refusing a real name costs a less personal "Hei!"; echoing a link
costs a phishing message signed by us, so the rule errs towards refusing:

- letters: upper or lower case letters of the Latin, Greek or Cyrillic script, and in one word
  only one of them (a Cyrillic Er among Latin letters passes for a "P" in a brand name);
- accents: at most two combining accents on a letter ("Nguyễn" typed decomposed);
- inside a word, between two letters: a hyphen or an apostrophe (', U+2019 or U+02BC), as in
  "Anna-Liisa" and "O'Brien";
- spaces between words, at most `MAX_WORDS` words and `MAX_CHARS` characters;
- nothing whose compatibility form differs (fullwidth, mathematical or ligature letters).

There are no digits and no . / : @ # = ? & % + _ < >, so no URL, domain, email address or phone
number can be spelled. Initials with a dot ("J. Smith") are refused too: the dot is what makes
a domain, and "Hei J.!" would be no greeting to keep. Other scripts (Arabic, Hebrew, CJK, ...)
are refused until someone checks them for letters that look like punctuation: Canadian
syllabics has a letter that looks like "/" (U+141F) and Lisu one that looks like "." (U+A4F8).
A few plain words ("Buy cheap pills") still pass: with no link, number or address they give a
reader nothing to act on, and the caps keep them short. A refused name is still stored as typed;
agents see it, only the messages leave it out.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# Room for three given names and a double surname; not for a sentence of advertising.
MAX_CHARS: Final = 64
MAX_WORDS: Final = 5
_SCRIPTS: Final = frozenset({"LATIN", "GREEK", "CYRILLIC"})
_CASED: Final = frozenset({"Lu", "Ll"})
_JOINERS: Final = frozenset("-'\u2019\u02bc")
_MAX_ACCENTS: Final = 2


def greetable(name: str | None) -> str | None:
    """`name` tidied (NFC, single spaces) if a message may greet by it, else None."""
    if name is None:
        return None
    # A no-break space pasted from a document still separates words; a newline or a tab refuses.
    spaced = "".join(
        " " if unicodedata.category(ch) == "Zs" else ch for ch in unicodedata.normalize("NFC", name)
    )
    words = [word for word in spaced.split(" ") if word]
    if not words or len(words) > MAX_WORDS:
        return None
    tidy = " ".join(words)
    if len(tidy) > MAX_CHARS or unicodedata.normalize("NFKC", tidy) != tidy:
        return None
    return tidy if all(_is_name_word(word) for word in words) else None


def _script(ch: str) -> str | None:
    """The script of a cased letter we greet with, from its Unicode name ("LATIN ...")."""
    if unicodedata.category(ch) not in _CASED:
        return None
    script = unicodedata.name(ch, "").split(" ", 1)[0]
    return script if script in _SCRIPTS else None


def _is_accent(ch: str) -> bool:
    return unicodedata.category(ch) == "Mn" and unicodedata.name(ch, "").startswith("COMBINING ")


def _is_name_word(word: str) -> bool:
    """Letters of one script, accents on letters, and hyphens or apostrophes between letters."""
    scripts: set[str] = set()
    accents = 0
    previous = ""  # "letter", "accent" or "joiner"
    for ch in word:
        if (script := _script(ch)) is not None:
            scripts.add(script)
            accents, previous = 0, "letter"
        elif _is_accent(ch):
            accents += 1
            if previous not in {"letter", "accent"} or accents > _MAX_ACCENTS:
                return False
            previous = "accent"
        elif ch in _JOINERS:
            if previous not in {"letter", "accent"}:
                return False
            previous = "joiner"
        else:
            return False
    return previous != "joiner" and len(scripts) == 1
