"""The texts we send (SMS and email) in the customer's language, times written the local way."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime

from services.callback.catalogs import N_, translate
from services.callback.greeting_name import greetable
from services.callback.selfservice import self_service_link
from services.callback.settings import CallbackSettings
from shared.vocabulary import LANGUAGES, CallbackStatus, Language

# Two concatenated GSM-7 segments. The link is never cut to fit, since a broken link is worse
# than a third segment; a long first name is dropped from the greeting instead.
SMS_MAX_CHARS = 300
_NAME_MAX_CHARS = 40
_SMS_NAME_MAX_CHARS = 20


@dataclass(frozen=True, slots=True)
class Typography:
    """How a language writes a day and a clock time: a CLDR locale and two CLDR patterns."""

    locale: str
    day: str
    clock: str


@dataclass(frozen=True, slots=True)
class _House:
    locale: str | None = None
    day: str | None = None
    clock: str | None = None


# Where CLDR's own format is not how our readers write, and why. A language not listed writes as
# its CLDR locale does (the `MEd` skeleton for a day, the short time format for a clock time):
# CLDR fi is already ours, "ti 24.11." and "15.30", so Finnish is not listed.
_HOUSE: Final[dict[str, _House]] = {
    # Finland-Swedish (CLDR sv_FI) writes "15.30" as Finnish does; its day "tis 24.11" lacks the
    # period after the month that our Swedish texts have always had ("tis 24.11.").
    "sv": _House(locale="sv_FI", day="EEE d.M."),
    # CLDR en is American ("Tue, Nov 24", "3:30 PM"). Our English readers are in Finland, and the
    # contract's own example writes "Tue 24 Nov" and "15.30". (en_FI is close, but says "Sept".)
    "en": _House(day="EEE d MMM", clock="H.mm"),
    # CLDR et writes "15:30"; Estonian orthography prefers the period, "kell 15.30", and so do
    # the Finnish and Swedish texts beside it. Its day stays CLDR's own: "T, 24.11".
    "et": _House(clock="H.mm"),
}


@functools.cache
def typography(language: Language) -> Typography:
    house = _HOUSE.get(language, _House())
    locale = Locale.parse(house.locale or language)
    return Typography(
        locale=str(locale),
        day=house.day or str(locale.datetime_skeletons["MEd"].pattern),
        clock=house.clock or str(locale.time_formats["short"].pattern),
    )


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The confirmation in one language, for each channel."""

    sms: str
    email_subject: str
    email_body: str


def clock_text(moment: datetime, language: Language = "fi", *, tz: ZoneInfo | None = None) -> str:
    """`15.30`: hours and minutes the way people here write them (in `tz`, else the moment's)."""
    style = typography(language)
    return format_datetime(moment, style.clock, tzinfo=tz, locale=style.locale)


def date_text(language: Language, moment: datetime, *, tz: ZoneInfo | None = None) -> str:
    """`ti 24.11.`, `tis 24.11.`, `Tue 24 Nov` or `T, 24.11`."""
    style = typography(language)
    return format_datetime(moment, style.day, tzinfo=tz, locale=style.locale)


def _days_ahead(moment: datetime, now: datetime, tz: ZoneInfo) -> int:
    """How many local days from today `moment` falls: 0 today, 1 tomorrow (never a UTC day)."""
    return (moment.astimezone(tz).date() - now.astimezone(tz).date()).days


def _relative(ids: tuple[str, str, str], days: int) -> str:
    """The today, tomorrow or on-that-day form of a phrase; a past day is named by its date."""
    return ids[0] if days == 0 else ids[1] if days == 1 else ids[2]


_ASAP: Final = (N_("when.asap.today"), N_("when.asap.tomorrow"), N_("when.asap.later"))
_WINDOW: Final = (N_("when.window.today"), N_("when.window.tomorrow"), N_("when.window.later"))
_MOMENT: Final = (N_("when.moment.today"), N_("when.moment.tomorrow"), N_("when.moment.later"))


def asap_phrase(language: Language, *, deadline: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "as soon as possible, today by 15.30", naming the day when the deadline is not today."""
    days = max(0, _days_ahead(deadline, now, tz))
    return translate(
        language,
        _relative(_ASAP, days),
        date=date_text(language, deadline, tz=tz),
        clock=clock_text(deadline, language, tz=tz),
    )


def window_phrase(
    language: Language, *, start: datetime, end: datetime, now: datetime, tz: ZoneInfo
) -> str:
    """A booked window: "today between 14.30 and 14.45", "tänään klo 14.30" en dash "14.45"."""
    return translate(
        language,
        _relative(_WINDOW, _days_ahead(start, now, tz)),
        date=date_text(language, start, tz=tz),
        start=clock_text(start, language, tz=tz),
        end=clock_text(end, language, tz=tz),
    )


def moment_phrase(language: Language, *, moment: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "tänään klo 15.00", "ti 24.11. klo 9.00", "tomorrow (Tue 24 Nov) at 9.00"."""
    return translate(
        language,
        _relative(_MOMENT, _days_ahead(moment, now, tz)),
        date=date_text(language, moment, tz=tz),
        clock=clock_text(moment, language, tz=tz),
    )


# A closed callback has no time to promise, nor has one an agent is calling now: `when`
# says what stands instead, one phrase per status.
_STANDS: Final[dict[str, str]] = {
    CallbackStatus.IN_PROGRESS: N_("when.status.in_progress"),
    CallbackStatus.COMPLETED: N_("when.status.completed"),
    CallbackStatus.FAILED: N_("when.status.failed"),
    CallbackStatus.CANCELLED: N_("when.status.cancelled"),
    CallbackStatus.EXPIRED: N_("when.status.expired"),
}


def status_phrase(language: Language, status: str) -> str | None:
    """ "cancelled: we will not call you" and the like; None for a status still waiting."""
    message_id = _STANDS.get(status)
    return translate(language, message_id) if message_id is not None else None


def _short_name(name: str | None) -> str | None:
    """The name an email greets by: only one `greetable` passes, since the sender chose it."""
    greeted = greetable(name)
    if greeted is None:
        return None
    return greeted if len(greeted) <= _NAME_MAX_CHARS else greeted[: _NAME_MAX_CHARS - 1] + "…"


def _first_name(name: str | None) -> str | None:
    short = _short_name(name)
    if short is None:
        return None
    first = short.split(" ", 1)[0]
    return first if len(first) <= _SMS_NAME_MAX_CHARS else None


def _greeted(language: Language, message_id: str, first: str | None, **fields: object) -> str:
    """An SMS text opening with "Hei Maija!" (or "Hei!" without a first name)."""
    hello = (
        translate(language, "greeting.sms", name=first)
        if first
        else translate(language, "greeting.sms.anonymous")
    )
    return translate(language, message_id, hello=hello, **fields)


def _sms(language: Language, message_id: str, name: str | None, **fields: object) -> str:
    """The SMS greeting by first name, which it drops rather than grow past SMS_MAX_CHARS."""
    text = _greeted(language, message_id, _first_name(name), **fields)
    if len(text) > SMS_MAX_CHARS:
        text = _greeted(language, message_id, None, **fields)
    return text


def _email(language: Language, name: str | None, paragraphs: list[str]) -> str:
    short = _short_name(name)
    greeting = (
        translate(language, "greeting.email", name=short)
        if short
        else translate(language, "greeting.email.anonymous")
    )
    return _letter(language, [greeting, *paragraphs])


def _letter(language: Language, paragraphs: list[str]) -> str:
    """An email body: its paragraphs, then the line saying replies are not read."""
    return "\n\n".join([*paragraphs, translate(language, "email.no_reply")]) + "\n"


def render_confirmation(
    *,
    language: Language,
    name: str | None,
    phone: str,
    deadline: datetime,
    now: datetime,
    tz: ZoneInfo,
    link: str,
    slot: tuple[datetime, datetime] | None = None,
) -> Confirmation:
    """The confirmation of a new callback: when we will call, and the self-service link.

    With a booked `slot` it names that window; without one, "as soon as possible" and the
    SLA deadline.
    """
    if slot is not None:
        when = window_phrase(language, start=slot[0], end=slot[1], now=now, tz=tz)
    else:
        when = asap_phrase(language, deadline=deadline, now=now, tz=tz)
    body = [
        translate(language, "confirmation.email.when", phone=phone, when=when),
        translate(language, "confirmation.email.link", link=link),
    ]
    return Confirmation(
        sms=_sms(language, N_("confirmation.sms"), name, when=when, link=link),
        email_subject=translate(language, "confirmation.subject"),
        email_body=_email(language, name, body),
    )


def render_reminder(
    *,
    language: Language,
    name: str | None,
    start: datetime,
    end: datetime,
    now: datetime,
    tz: ZoneInfo,
    link: str,
) -> Confirmation:
    """A reminder shortly before the booked slot."""
    when = window_phrase(language, start=start, end=end, now=now, tz=tz)
    body = [
        translate(language, "reminder.email.when", when=when),
        translate(language, "reminder.email.link", link=link),
    ]
    return Confirmation(
        sms=_sms(language, N_("reminder.sms"), name, when=when, link=link),
        email_subject=translate(language, "reminder.subject"),
        email_body=_email(language, name, body),
    )


def render_tried(
    *,
    language: Language,
    name: str | None,
    next_try: datetime | None,
    now: datetime,
    tz: ZoneInfo,
    link: str,
) -> Confirmation:
    """ "We tried to reach you": with the next try's time, or without one after the last."""
    if next_try is not None:
        message_id = N_("tried.sms.again")
        fields: dict[str, object] = {
            "when": moment_phrase(language, moment=next_try, now=now, tz=tz),
            "link": link,
        }
    else:
        message_id, fields = N_("tried.sms.last"), {}
    # The email says what the SMS says, greeting and all; a greeting line of its own above that
    # would greet the customer twice.
    said = _greeted(language, message_id, _first_name(name), **fields)
    return Confirmation(
        sms=_sms(language, message_id, name, **fields),
        email_subject=translate(language, "tried.subject"),
        email_body=_letter(language, [said]),
    )


def render_at_risk_offer(
    *,
    language: Language,
    name: str | None,
    promised_by: datetime,
    now: datetime,
    tz: ZoneInfo,
    link: str,
) -> Confirmation:
    """A promise at risk (§14): we may be late, and the link to choose a later time. SMS only."""
    when = moment_phrase(language, moment=promised_by, now=now, tz=tz)
    return Confirmation(
        sms=_sms(language, N_("at_risk.sms"), name, when=when, link=link),
        email_subject="",
        email_body="",
    )


def render_cancelled(*, language: Language, name: str | None) -> Confirmation:
    """The callback was cancelled (by the customer or by us)."""
    said = _greeted(language, N_("cancelled.sms"), _first_name(name))
    return Confirmation(
        sms=_sms(language, N_("cancelled.sms"), name),
        email_subject=translate(language, "cancelled.subject"),
        email_body=_letter(language, [said]),  # greeted once, as in render_tried
    )


def render_rebooked(
    *,
    language: Language,
    name: str | None,
    start: datetime,
    end: datetime,
    now: datetime,
    tz: ZoneInfo,
    link: str,
) -> Confirmation:
    """The callback moved to another slot."""
    when = window_phrase(language, start=start, end=end, now=now, tz=tz)
    said = _greeted(language, N_("rebooked.sms"), _first_name(name), when=when, link=link)
    return Confirmation(
        sms=_sms(language, N_("rebooked.sms"), name, when=when, link=link),
        email_subject=translate(language, "rebooked.subject"),
        email_body=_letter(language, [said]),  # greeted once, as in render_tried
    )


def render_acknowledgement(*, language: Language, name: str | None) -> Confirmation:
    """ "We received your message": an email-only contact, nobody to call back."""
    return Confirmation(
        sms="",
        email_subject=translate(language, "acknowledgement.subject"),
        email_body=_email(language, name, [translate(language, "acknowledgement.email")]),
    )


def render_survey(*, language: Language, name: str | None, link: str) -> Confirmation:
    """The satisfaction question (§13): a reply 1-5 by SMS, or a choice on the page by email."""
    return Confirmation(
        sms=_sms(language, N_("survey.sms"), name),
        email_subject=translate(language, "survey.subject"),
        email_body=_email(language, name, [translate(language, "survey.email", link=link)]),
    )


def render_stop_confirmed(*, language: Language, name: str | None) -> Confirmation:
    """The one answer to STOP: no more surveys. SMS only."""
    return Confirmation(sms=_sms(language, N_("stop.sms"), name), email_subject="", email_body="")


# ----------------------------------------------------------------------------- the SMS budget

# The longest first name an SMS greets by, and the zone whose clock the worst case is read in.
_WORST_NAME: Final = "Aleksandra-Katariina Virtanen"
_WORST_ZONE: Final = ZoneInfo("Europe/Helsinki")
# A link as long as ours are, under a host name of ordinary length.
_ORDINARY_BASE_URL: Final = "https://asiakaspalvelu.example.fi"


def _ordinary_link() -> str:
    settings = CallbackSettings(environment="development", public_base_url=_ORDINARY_BASE_URL)
    return self_service_link(settings, "0195f3a8-6c2e-7d41-9b0a-3f5e8c7d2a10")


def _worst_case(phrase: Callable[[datetime, datetime], str]) -> tuple[datetime, datetime]:
    """The (now, moment) whose phrase is longest, from each day of a year and the two after.

    At 22.45, that covers every form (today, tomorrow, a named day) with every weekday and
    month and two-digit dates.
    """
    new_year = datetime(2026, 1, 1, tzinfo=_WORST_ZONE)
    cases = [
        (now, now + timedelta(days=ahead, hours=22, minutes=45))
        for now in (new_year + timedelta(days=day) for day in range(366))
        for ahead in range(3)
    ]
    return max(cases, key=lambda case: len(phrase(*case)))


def _worst_case_sms(language: Language) -> list[tuple[str, str]]:
    """Every SMS we send, each with the longest realistic input: (what, text)."""
    tz, slot, name, link = _WORST_ZONE, timedelta(minutes=15), _WORST_NAME, _ordinary_link()
    asap_now, deadline = _worst_case(
        lambda now, moment: asap_phrase(language, deadline=moment, now=now, tz=tz)
    )
    now, start = _worst_case(
        lambda now, moment: window_phrase(language, start=moment, end=moment + slot, now=now, tz=tz)
    )
    retry_now, retry = _worst_case(
        lambda now, moment: moment_phrase(language, moment=moment, now=now, tz=tz)
    )
    confirmation = render_confirmation(
        language=language,
        name=name,
        phone="+358401234567",
        deadline=deadline,
        now=asap_now,
        tz=tz,
        link=link,
    )
    booked = render_confirmation(
        language=language,
        name=name,
        phone="+358401234567",
        deadline=start,
        now=now,
        tz=tz,
        link=link,
        slot=(start, start + slot),
    )
    reminder = render_reminder(
        language=language, name=name, start=start, end=start + slot, now=now, tz=tz, link=link
    )
    again = render_tried(
        language=language, name=name, next_try=retry, now=retry_now, tz=tz, link=link
    )
    last = render_tried(language=language, name=name, next_try=None, now=now, tz=tz, link=link)
    rebooked = render_rebooked(
        language=language, name=name, start=start, end=start + slot, now=now, tz=tz, link=link
    )
    at_risk = render_at_risk_offer(
        language=language, name=name, promised_by=retry, now=retry_now, tz=tz, link=link
    )
    return [
        ("confirmation", confirmation.sms),
        ("confirmation of a booked time", booked.sms),
        ("reminder", reminder.sms),
        ("tried, trying again", again.sms),
        ("tried, last time", last.sms),
        ("cancelled", render_cancelled(language=language, name=name).sms),
        ("rebooked", rebooked.sms),
        ("promise at risk", at_risk.sms),
        ("survey", render_survey(language=language, name=name, link=link).sms),
        ("STOP confirmed", render_stop_confirmed(language=language, name=name).sms),
    ]


def sms_budget_problems(max_chars: int = SMS_MAX_CHARS) -> list[str]:
    """Each SMS, in each language, that would not fit `max_chars` with the worst realistic input."""
    first = _first_name(_WORST_NAME)
    problems = []
    for language in LANGUAGES:
        for what, sms in _worst_case_sms(language):
            if len(sms) > max_chars or (first is not None and first not in sms):
                problems.append(
                    f"{language}: the {what} SMS does not fit {max_chars} characters with a "
                    f"{len(first or '')}-character first name and an ordinary link: {sms!r}"
                )
    return problems
