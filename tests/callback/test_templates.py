"""Confirmation texts: the promised time in the site's zone, the local way, in every language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel import Locale

from services.callback.templates import (
    SMS_MAX_CHARS,
    asap_phrase,
    clock_text,
    date_text,
    render_confirmation,
    typography,
)
from shared.vocabulary import LANGUAGES, Language

HELSINKI = ZoneInfo("Europe/Helsinki")
# Tuesday 24 November 2026, 12.00 in Helsinki (UTC+2).
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("language", "deadline", "expected"),
    [
        (
            "fi",
            datetime(2026, 11, 24, 13, 30, tzinfo=UTC),
            "mahdollisimman pian, tänään viimeistään klo 15.30",
        ),
        (
            "fi",
            datetime(2026, 11, 25, 7, 15, tzinfo=UTC),
            "mahdollisimman pian, viimeistään huomenna ke 25.11. klo 9.15",
        ),
        (
            "fi",
            datetime(2026, 11, 27, 7, 15, tzinfo=UTC),
            "mahdollisimman pian, viimeistään pe 27.11. klo 9.15",
        ),
        (
            "sv",
            datetime(2026, 11, 24, 13, 30, tzinfo=UTC),
            "så snart som möjligt, i dag senast kl. 15.30",
        ),
        (
            "sv",
            datetime(2026, 11, 25, 7, 15, tzinfo=UTC),
            "så snart som möjligt, senast i morgon ons 25.11. kl. 9.15",
        ),
        ("en", datetime(2026, 11, 24, 13, 30, tzinfo=UTC), "as soon as possible, today by 15.30"),
        (
            "en",
            datetime(2026, 11, 25, 7, 15, tzinfo=UTC),
            "as soon as possible, by 9.15 tomorrow (Wed 25 Nov)",
        ),
        (
            "et",
            datetime(2026, 11, 24, 13, 30, tzinfo=UTC),
            "esimesel võimalusel, hiljemalt täna kell 15.30",
        ),
        (
            "et",
            datetime(2026, 11, 25, 7, 15, tzinfo=UTC),
            "esimesel võimalusel, hiljemalt homme (K, 25.11) kell 9.15",
        ),
        (
            "et",
            datetime(2026, 11, 27, 7, 15, tzinfo=UTC),
            "esimesel võimalusel, hiljemalt R, 27.11 kell 9.15",
        ),
    ],
)
def test_asap_phrase_names_the_deadline_in_local_time(
    language: Language, deadline: datetime, expected: str
) -> None:
    assert asap_phrase(language, deadline=deadline, now=NOW, tz=HELSINKI) == expected


def test_the_day_is_the_local_day_not_the_utc_day() -> None:
    # 23.30 UTC on the 24th is already 01.30 on Wednesday in Helsinki: "tomorrow", not "today".
    deadline = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    phrase = asap_phrase("fi", deadline=deadline, now=NOW, tz=HELSINKI)
    assert phrase == "mahdollisimman pian, viimeistään huomenna ke 25.11. klo 1.30"


def test_summer_time_is_applied() -> None:
    summer_now = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    deadline = datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    phrase = asap_phrase("en", deadline=deadline, now=summer_now, tz=HELSINKI)
    assert phrase == "as soon as possible, today by 14.00"


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_fits_even_with_a_long_name(language: Language) -> None:
    text = render_confirmation(
        language=language,
        name="Maija-Liisa Johanna Kristiina Meikäläinen-Virtanen-Korhonen",
        phone="+358401234567",
        deadline=datetime(2026, 11, 25, 7, 15, tzinfo=UTC),
        now=NOW,
        tz=HELSINKI,
        link="http://127.0.0.1:8001/v1/self/" + "x" * 110,
    )
    assert len(text.sms) <= SMS_MAX_CHARS
    assert text.sms.endswith("x" * 110)
    greetings = {"Hei Maija-Liisa", "Hej Maija-Liisa", "Hi Maija-Liisa", "Tere, Maija-Liisa"}
    assert text.sms.split("!")[0] in greetings
    assert "Maija-Liisa Johanna Kristiina Meikäläin…" in text.email_body


def test_without_a_name_the_greeting_is_plain() -> None:
    text = render_confirmation(
        language="fi",
        name=None,
        phone="+358401234567",
        deadline=NOW,
        now=NOW,
        tz=HELSINKI,
        link="https://x.example/v1/self/t",
    )
    assert text.sms.startswith("Hei! Saimme soittopyyntösi.")
    assert text.email_body.startswith("Hei,\n\nkiitos yhteydenotostasi.")


def test_windows_and_moments_are_written_the_local_way() -> None:
    from services.callback.templates import moment_phrase, window_phrase

    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # ti 24.11. 12.00 in Helsinki
    start, end = (
        datetime(2026, 11, 24, 12, 30, tzinfo=UTC),
        datetime(2026, 11, 24, 12, 45, tzinfo=UTC),
    )
    assert (
        window_phrase("fi", start=start, end=end, now=now, tz=HELSINKI)
        == "tänään klo 14.30\u201314.45"
    )
    assert (
        window_phrase("sv", start=start, end=end, now=now, tz=HELSINKI)
        == "i dag kl. 14.30\u201314.45"
    )
    assert (
        window_phrase("en", start=start, end=end, now=now, tz=HELSINKI)
        == "today between 14.30 and 14.45"
    )
    tomorrow = start + timedelta(days=1)
    assert (
        window_phrase(
            "fi", start=tomorrow, end=tomorrow + timedelta(minutes=15), now=now, tz=HELSINKI
        )
        == "huomenna ke 25.11. klo 14.30\u201314.45"
    )
    later = start + timedelta(days=7)
    assert moment_phrase("fi", moment=later, now=now, tz=HELSINKI) == "ti 1.12. klo 14.30"
    assert moment_phrase("sv", moment=later, now=now, tz=HELSINKI) == "tis 1.12. kl. 14.30"
    assert moment_phrase("en", moment=later, now=now, tz=HELSINKI) == "on Tue 1 Dec at 14.30"
    assert (
        window_phrase("et", start=start, end=end, now=now, tz=HELSINKI)
        == "täna kell 14.30\u201314.45"
    )
    assert moment_phrase("et", moment=later, now=now, tz=HELSINKI) == "T, 1.12 kell 14.30"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_of_message_in_every_language(language: Language) -> None:
    from services.callback.templates import (
        render_acknowledgement,
        render_cancelled,
        render_rebooked,
        render_reminder,
        render_tried,
    )

    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    start = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    link = "https://rb.example.fi/v1/self/" + "t" * 90
    messages = [
        render_reminder(
            language=language,
            name="Åsa Öberg",
            start=start,
            end=start + timedelta(minutes=15),
            now=now,
            tz=HELSINKI,
            link=link,
        ),
        render_tried(
            language=language, name="Åsa Öberg", next_try=start, now=now, tz=HELSINKI, link=link
        ),
        render_tried(language=language, name=None, next_try=None, now=now, tz=HELSINKI, link=link),
        render_cancelled(language=language, name="Åsa Öberg"),
        render_rebooked(
            language=language,
            name="Åsa Öberg",
            start=start,
            end=start + timedelta(minutes=15),
            now=now,
            tz=HELSINKI,
            link=link,
        ),
    ]
    for message in messages:
        assert 0 < len(message.sms) <= 300
        assert message.email_subject
        assert message.email_body.endswith("\n")
    assert "14.30" in messages[0].sms
    assert "Åsa" in messages[0].sms
    ack = render_acknowledgement(language=language, name="Åsa Öberg")
    assert ack.sms == ""
    assert "Åsa Öberg" in ack.email_body


@pytest.mark.parametrize(
    ("language", "day", "clock"),
    [
        ("fi", "ke 2.9.", "9.05"),
        ("sv", "ons 2.9.", "9.05"),
        # Our English readers are in Finland: day before month, and no "Sept".
        ("en", "Wed 2 Sep", "9.05"),
        # CLDR et names the day by one letter (K for kolmapäev); the clock keeps the period.
        ("et", "K, 2.9", "9.05"),
    ],
)
def test_days_and_clock_times_follow_cldr_in_our_typography(
    language: Language, day: str, clock: str
) -> None:
    moment = datetime(2026, 9, 2, 6, 5, tzinfo=UTC)  # 9.05 in Helsinki (UTC+3)
    assert date_text(language, moment, tz=HELSINKI) == day
    assert clock_text(moment, language, tz=HELSINKI) == clock
    # Without a zone, a moment is written in its own.
    assert clock_text(moment.astimezone(HELSINKI), language) == clock


def test_finnish_is_cldrs_own_format_with_no_house_pattern() -> None:
    finnish = Locale.parse("fi")
    assert typography("fi").day == finnish.datetime_skeletons["MEd"].pattern
    assert typography("fi").clock == finnish.time_formats["short"].pattern


def test_an_estonian_customer_is_addressed_formally_in_estonian() -> None:
    text = render_confirmation(
        language="et",
        name="Mari Maasikas",
        phone="+37251234567",
        deadline=datetime(2026, 11, 24, 13, 30, tzinfo=UTC),
        now=NOW,
        tz=HELSINKI,
        link="https://rb.example.ee/v1/self/t",
    )
    assert text.sms == (
        "Tere, Mari! Saime teie soovi kätte. Helistame teile esimesel võimalusel, "
        "hiljemalt täna kell 15.30. Vaadake või tühistage: https://rb.example.ee/v1/self/t"
    )
    assert text.email_subject == "Teie tagasihelistamise soov on vastu võetud"
    assert text.email_body.startswith("Tere, Mari Maasikas!\n\nTäname, et võtsite meiega")
    assert "numbrile +37251234567" in text.email_body
