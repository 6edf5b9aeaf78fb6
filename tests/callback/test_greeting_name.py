"""The names our texts greet by: real names are greeted, links and contact data are not."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.callback.greeting_name import MAX_CHARS, greetable
from services.callback.templates import (
    Confirmation,
    render_acknowledgement,
    render_cancelled,
    render_confirmation,
    render_rebooked,
    render_reminder,
    render_tried,
)
from shared.vocabulary import LANGUAGES, Language

HELSINKI = ZoneInfo("Europe/Helsinki")
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # ti 24.11. 12.00 in Helsinki
START = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
LINK = "https://rb.example.fi/v1/self/t0ken"
# Mar\u02bcyana Shevchenko, written in Cyrillic (escaped: its letters look like Latin ones).
CYRILLIC = (
    "\u041c\u0430\u0440\u02bc\u044f\u043d\u0430 \u0428\u0435\u0432\u0447\u0435\u043d\u043a\u043e"
)

ACCEPTED = [
    ("Maija", "Maija"),
    ("Anna-Liisa Virtanen", "Anna-Liisa Virtanen"),
    ("O'Brien", "O'Brien"),
    ("O\u2019Brien", "O\u2019Brien"),
    ("D'Angelo", "D'Angelo"),
    ("Åsa Öberg", "Åsa Öberg"),
    ("José", "José"),
    ("Zoë", "Zoë"),
    ("Nguyễn Văn An", "Nguyễn Văn An"),
    # Typed with separate accents, greeted in the composed form.
    (unicodedata.normalize("NFD", "Nguyễn Văn An"), "Nguyễn Văn An"),
    (CYRILLIC, CYRILLIC),
    ("Γιώργος Παπαδόπουλος", "Γιώργος Παπαδόπουλος"),
    ("MAIJA MEIKÄLÄINEN", "MAIJA MEIKÄLÄINEN"),
    # Whitespace around and between words is tidied, a no-break space included.
    ("  Maija   Meikäläinen ", "Maija Meikäläinen"),
    ("Jürgen\u00a0Müller", "Jürgen Müller"),
    (
        "Maija-Liisa Johanna Kristiina Meikäläinen-Virtanen-Korhonen",
        "Maija-Liisa Johanna Kristiina Meikäläinen-Virtanen-Korhonen",
    ),
]

REFUSED = [
    # The review's two attacks.
    "evil.example/pay Now",
    "Buy cheap pills at http://spam.example",
    # Links with and without a scheme, domains, addresses, numbers.
    "https://evil.example",
    "http://x.fi",
    "evil.example/pay",
    "www.x.fi",
    "x.fi",
    "x@y.fi",
    "Maija at x@y.fi",
    "+358 40 123 4567",
    "0401234567",
    "Call 0800 123 456",
    "Call 0800-123456",
    "Maija 2",
    # Markup and query-string symbols.
    "<b>Maija</b>",
    "<script>",
    "Maija & Matti",
    "a=b",
    "pay?now",
    "100%",
    "#win",
    "first_last",
    "Maija:",
    # Initials with a dot: the dot is what makes a domain (documented in the module).
    "J. Smith",
    # Too long, or too many words.
    "A" * (MAX_CHARS + 1),
    "Maija " * 40,
    "Buy our cheap pills today friend",
    # Newlines, tabs, other control and format characters.
    "Maija\nVirtanen",
    "Maija\r\nClick here",
    "Maija\tVirtanen",
    "Maija\x00",
    "Maija\u200b",
    "Maija\u202eevil",
    # Emoji and letter-like symbols.
    "Maija 😀",
    "Maija\u2122",
    "ﬁona",
    "\uff2daija",  # a fullwidth M
    "\U0001d40c\U0001d41a\U0001d422\U0001d423\U0001d41a",  # mathematical bold
    # Mixed scripts in one word (a Cyrillic Er and A among Latin letters), look-alike punctuation.
    "\u0420\u0430ypal",
    "evil\ua4f8example",
    "evil\u1427example\u141fpay",
    # Joiners not between letters.
    "-Maija",
    "Maija-",
    "Anna--Liisa",
    "'",
    # An accent on nothing, a pile of accents.
    "\u0301Maija",
    "Ma" + "\u0301" * 5 + "ija",
    # Nothing at all.
    "",
    "   ",
]


@pytest.mark.parametrize(("name", "greeted"), ACCEPTED)
def test_real_names_are_greeted(name: str, greeted: str) -> None:
    assert greetable(name) == greeted


@pytest.mark.parametrize("name", REFUSED)
def test_links_contact_data_and_symbols_are_not_greeted(name: str) -> None:
    assert greetable(name) is None


def test_no_name_is_not_greeted() -> None:
    assert greetable(None) is None


def _every_message(language: Language, name: str | None) -> list[Confirmation]:
    slot = (START, START + timedelta(minutes=15))
    return [
        render_confirmation(
            language=language,
            name=name,
            phone="+358401234567",
            deadline=START,
            now=NOW,
            tz=HELSINKI,
            link=LINK,
        ),
        render_confirmation(
            language=language,
            name=name,
            phone="+358401234567",
            deadline=START,
            now=NOW,
            tz=HELSINKI,
            link=LINK,
            slot=slot,
        ),
        render_reminder(
            language=language,
            name=name,
            start=slot[0],
            end=slot[1],
            now=NOW,
            tz=HELSINKI,
            link=LINK,
        ),
        render_tried(language=language, name=name, next_try=START, now=NOW, tz=HELSINKI, link=LINK),
        render_tried(language=language, name=name, next_try=None, now=NOW, tz=HELSINKI, link=LINK),
        render_cancelled(language=language, name=name),
        render_rebooked(
            language=language,
            name=name,
            start=slot[0],
            end=slot[1],
            now=NOW,
            tz=HELSINKI,
            link=LINK,
        ),
        render_acknowledgement(language=language, name=name),
    ]


def _texts(message: Confirmation) -> list[str]:
    """What the customer reads, less our own self-service link (which has its own "http")."""
    return [
        text.replace(LINK, "") for text in (message.sms, message.email_subject, message.email_body)
    ]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", [n for n in REFUSED if n.strip()])
def test_no_message_of_any_kind_carries_a_refused_name(language: Language, name: str) -> None:
    nameless = _every_message(language, None)
    for message, without in zip(_every_message(language, name), nameless, strict=True):
        # Exactly the text a customer without a name gets: not a word of the name is left.
        assert message == without


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("evil.example/pay Now", ["evil", "example", "pay", "Now"]),
        ("Buy cheap pills at http://spam.example", ["Buy", "pills", "http", "spam"]),
    ],
)
def test_the_reviews_attacks_get_the_nameless_greeting(name: str, needles: list[str]) -> None:
    for message in _every_message("fi", name):
        for text in _texts(message):
            assert not [needle for needle in needles if needle in text], text
        if message.sms:
            assert message.sms.startswith("Hei! ")
    acknowledgement = render_acknowledgement(language="en", name=name)
    assert acknowledgement.email_body.startswith("Hi,\n\nthank you for your message.")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_real_name_is_still_greeted_in_every_message(language: Language) -> None:
    for message in _every_message(language, "Åsa Öberg"):
        assert "Åsa" in message.sms or not message.sms
        assert "Åsa" in message.email_body


def test_an_email_greets_once() -> None:
    # The tried, cancelled and rebooked emails repeat their SMS, greeting included.
    for message in _every_message("fi", "Maija Meikäläinen"):
        assert message.email_body.count("Hei") == 1, message.email_body
    confirmation, *_ = _every_message("fi", "Maija Meikäläinen")
    assert confirmation.email_body.startswith("Hei Maija Meikäläinen,\n\n")
    assert render_cancelled(language="fi", name="Maija Meikäläinen").email_body == (
        "Hei Maija! Soittopyyntösi on peruttu. Emme soita sinulle.\n\n"
        "Tähän viestiin ei voi vastata.\n"
    )


_FORBIDDEN = set('0123456789./:@#=?&%+_<>\\|"()[]{}!$*,;~`^')


@given(st.text(max_size=120))
def test_whatever_is_typed_a_greeted_name_carries_no_link_material(name: str) -> None:
    greeted = greetable(name)
    if greeted is not None:
        assert not _FORBIDDEN & set(greeted)
        assert all(unicodedata.category(ch)[0] in "LM" or ch in " -'\u2019\u02bc" for ch in greeted)
        assert len(greeted) <= MAX_CHARS
        assert greetable(greeted) == greeted
