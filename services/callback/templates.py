"""Confirmation texts in Finnish, Swedish and English, with times the local way.

Times are shown in the site's zone as people there write them: `klo 15.30`, `ti 24.11.`
(Finnish), `kl. 15.30`, `tis 24.11.` (Swedish), `15.30`, `Tue 24 Nov` (English, as the
contract's own example has it). An SMS greets by first name and stays within
`SMS_MAX_CHARS` (two concatenated segments) with a link of ordinary length; the link is
never cut, since a broken link is worse than a third segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from shared.contracts import Language

SMS_MAX_CHARS = 300
# Time ranges are written with an en dash, as Finnish and Swedish typography has it.
_EN_DASH = "\u2013"
_NAME_MAX_CHARS = 40
_SMS_NAME_MAX_CHARS = 20

_WEEKDAYS: dict[str, tuple[str, ...]] = {
    "fi": ("ma", "ti", "ke", "to", "pe", "la", "su"),
    "sv": ("mån", "tis", "ons", "tors", "fre", "lör", "sön"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The confirmation in one language, for each channel."""

    sms: str
    email_subject: str
    email_body: str


def clock_text(moment: datetime) -> str:
    """`15.30`: hours and minutes the way people here write them."""
    return f"{moment.hour}.{moment.minute:02d}"


def date_text(language: Language, moment: datetime) -> str:
    """`ti 24.11.`, `tis 24.11.` or `Tue 24 Nov`."""
    weekday = _WEEKDAYS[language][moment.weekday()]
    if language == "en":
        return f"{weekday} {moment.day} {_MONTHS_EN[moment.month - 1]}"
    return f"{weekday} {moment.day}.{moment.month}."


def asap_phrase(language: Language, *, deadline: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "as soon as possible, today by 15.30", naming the day when the deadline is not today."""
    local, today = deadline.astimezone(tz), now.astimezone(tz).date()
    days = (local.date() - today).days
    clock, date = clock_text(local), date_text(language, local)
    if language == "fi":
        if days <= 0:
            return f"mahdollisimman pian, tänään viimeistään klo {clock}"
        if days == 1:
            return f"mahdollisimman pian, viimeistään huomenna {date} klo {clock}"
        return f"mahdollisimman pian, viimeistään {date} klo {clock}"
    if language == "sv":
        if days <= 0:
            return f"så snart som möjligt, i dag senast kl. {clock}"
        if days == 1:
            return f"så snart som möjligt, senast i morgon {date} kl. {clock}"
        return f"så snart som möjligt, senast {date} kl. {clock}"
    if days <= 0:
        return f"as soon as possible, today by {clock}"
    if days == 1:
        return f"as soon as possible, by {clock} tomorrow ({date})"
    return f"as soon as possible, by {clock} on {date}"


def _day_prefix(language: Language, local: datetime, today: date) -> str:
    """`tänään` / `huomenna ti 24.11.` / `ti 24.11.` and the like, before a clock time."""
    days = (local.date() - today).days
    shown = date_text(language, local)
    if language == "fi":
        return "tänään" if days == 0 else f"huomenna {shown}" if days == 1 else shown
    if language == "sv":
        return "i dag" if days == 0 else f"i morgon {shown}" if days == 1 else shown
    return "today" if days == 0 else f"tomorrow ({shown})" if days == 1 else f"on {shown}"


def window_phrase(
    language: Language, *, start: datetime, end: datetime, now: datetime, tz: ZoneInfo
) -> str:
    """A booked window: "tänään klo 14.30-14.45", "today between 14.30 and 14.45".

    (The range is written with an en dash in the text itself.)
    """
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    prefix = _day_prefix(language, local_start, now.astimezone(tz).date())
    span = f"{clock_text(local_start)}{_EN_DASH}{clock_text(local_end)}"
    if language == "fi":
        return f"{prefix} klo {span}"
    if language == "sv":
        return f"{prefix} kl. {span}"
    return f"{prefix} between {clock_text(local_start)} and {clock_text(local_end)}"


def moment_phrase(language: Language, *, moment: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "tänään klo 15.00", "ti 24.11. klo 9.00", "tomorrow (Tue 24 Nov) at 9.00"."""
    local = moment.astimezone(tz)
    prefix = _day_prefix(language, local, now.astimezone(tz).date())
    if language == "fi":
        return f"{prefix} klo {clock_text(local)}"
    if language == "sv":
        return f"{prefix} kl. {clock_text(local)}"
    return f"{prefix} at {clock_text(local)}"


def _short_name(name: str | None) -> str | None:
    if not name or not name.strip():
        return None
    name = " ".join(name.split())
    return name if len(name) <= _NAME_MAX_CHARS else name[: _NAME_MAX_CHARS - 1] + "…"


def _first_name(name: str | None) -> str | None:
    short = _short_name(name)
    if short is None:
        return None
    first = short.split(" ", 1)[0]
    return first if len(first) <= _SMS_NAME_MAX_CHARS else None


def _sms(language: Language, name: str | None, when: str, link: str) -> str:
    if language == "fi":
        hello = f"Hei {name}!" if name else "Hei!"
        return f"{hello} Saimme soittopyyntösi. Soitamme sinulle {when}. Katso tai peru: {link}"
    if language == "sv":
        hello = f"Hej {name}!" if name else "Hej!"
        return (
            f"{hello} Vi har tagit emot din begäran. Vi ringer dig {when}. "
            f"Visa eller avboka: {link}"
        )
    hello = f"Hi {name}!" if name else "Hi!"
    return f"{hello} We got your callback request. We will call you {when}. View or cancel: {link}"


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
    short = _short_name(name)
    if language == "fi":
        subject = "Soittopyyntösi on vastaanotettu"
        body = (
            f"{f'Hei {short},' if short else 'Hei,'}\n\n"
            f"kiitos yhteydenotostasi. Soitamme sinulle numeroon {phone} {when}.\n\n"
            f"Voit katsoa soittopyyntösi tilan tai perua sen täällä:\n{link}\n\n"
            "Tähän viestiin ei voi vastata.\n"
        )
    elif language == "sv":
        subject = "Din begäran om återuppringning har tagits emot"
        body = (
            f"{f'Hej {short},' if short else 'Hej,'}\n\n"
            f"tack för att du kontaktade oss. Vi ringer dig på numret {phone} {when}.\n\n"
            f"Du kan se status för din begäran eller avboka den här:\n{link}\n\n"
            "Det här meddelandet går inte att svara på.\n"
        )
    else:
        subject = "We received your callback request"
        body = (
            f"{f'Hi {short},' if short else 'Hi,'}\n\n"
            f"thank you for contacting us. We will call you at {phone} {when}.\n\n"
            f"You can check your callback request or cancel it here:\n{link}\n\n"
            "This message was sent automatically; replies are not read.\n"
        )
    # The SMS greets by first name, and drops it rather than grow past SMS_MAX_CHARS.
    sms = _sms(language, _first_name(name), when, link)
    if len(sms) > SMS_MAX_CHARS:
        sms = _sms(language, None, when, link)
    return Confirmation(sms=sms, email_subject=subject, email_body=body)


def _greeting(language: Language, name: str | None) -> str:
    short = _short_name(name)
    word = {"fi": "Hei", "sv": "Hej", "en": "Hi"}[language]
    return f"{word} {short}," if short else f"{word},"


_NO_REPLY = {
    "fi": "Tähän viestiin ei voi vastata.\n",
    "sv": "Det här meddelandet går inte att svara på.\n",
    "en": "This message was sent automatically; replies are not read.\n",
}


def _email(language: Language, name: str | None, paragraphs: list[str]) -> str:
    return "\n\n".join([_greeting(language, name), *paragraphs]) + "\n\n" + _NO_REPLY[language]


def _fit(sms: str, fallback: str) -> str:
    return sms if len(sms) <= SMS_MAX_CHARS else fallback


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
    first = _first_name(name)
    if language == "fi":
        hello = f"Hei {first}!" if first else "Hei!"
        sms = f"{hello} Muistutus: soitamme sinulle {when}. Siirrä tai peru: {link}"
        subject = "Muistutus: soitamme sinulle pian"
        body = [f"muistutamme, että soitamme sinulle {when}.", f"Siirrä tai peru:\n{link}"]
    elif language == "sv":
        hello = f"Hej {first}!" if first else "Hej!"
        sms = f"{hello} Påminnelse: vi ringer dig {when}. Boka om eller avboka: {link}"
        subject = "Påminnelse: vi ringer dig snart"
        body = [f"vi vill påminna om att vi ringer dig {when}.", f"Boka om eller avboka:\n{link}"]
    else:
        hello = f"Hi {first}!" if first else "Hi!"
        sms = f"{hello} Reminder: we will call you {when}. Change or cancel: {link}"
        subject = "Reminder: we will call you soon"
        body = [f"a reminder that we will call you {when}.", f"Change or cancel:\n{link}"]
    return Confirmation(
        sms=_fit(sms, sms.replace(f" {first}!", "!") if first else sms),
        email_subject=subject,
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
    first = _first_name(name)
    if language == "fi":
        hello = f"Hei {first}!" if first else "Hei!"
        then = (
            f"Yritämme uudelleen {moment_phrase(language, moment=next_try, now=now, tz=tz)}."
            if next_try
            else "Voit jättää uuden soittopyynnön, niin soitamme uudelleen."
        )
        sms = f"{hello} Yritimme soittaa sinulle, mutta emme tavoittaneet sinua. {then}"
        subject = "Yritimme soittaa sinulle"
    elif language == "sv":
        hello = f"Hej {first}!" if first else "Hej!"
        then = (
            f"Vi försöker igen {moment_phrase(language, moment=next_try, now=now, tz=tz)}."
            if next_try
            else "Lämna gärna en ny begäran, så ringer vi igen."
        )
        sms = f"{hello} Vi försökte ringa dig men nådde dig inte. {then}"
        subject = "Vi försökte ringa dig"
    else:
        hello = f"Hi {first}!" if first else "Hi!"
        then = (
            f"We will try again {moment_phrase(language, moment=next_try, now=now, tz=tz)}."
            if next_try
            else "Leave a new callback request and we will call again."
        )
        sms = f"{hello} We tried to reach you but could not get through. {then}"
        subject = "We tried to reach you"
    if next_try:
        sms = f"{sms} {link}"
    return Confirmation(sms=sms, email_subject=subject, email_body=_email(language, name, [sms]))


def render_cancelled(*, language: Language, name: str | None) -> Confirmation:
    """The callback was cancelled (by the customer or by us)."""
    first = _first_name(name)
    if language == "fi":
        hello = f"Hei {first}!" if first else "Hei!"
        sms = f"{hello} Soittopyyntösi on peruttu. Emme soita sinulle."
        subject = "Soittopyyntösi on peruttu"
    elif language == "sv":
        hello = f"Hej {first}!" if first else "Hej!"
        sms = f"{hello} Din begäran om återuppringning är avbokad. Vi ringer inte."
        subject = "Din begäran om återuppringning är avbokad"
    else:
        hello = f"Hi {first}!" if first else "Hi!"
        sms = f"{hello} Your callback request is cancelled. We will not call you."
        subject = "Your callback request is cancelled"
    return Confirmation(sms=sms, email_subject=subject, email_body=_email(language, name, [sms]))


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
    first = _first_name(name)
    if language == "fi":
        hello = f"Hei {first}!" if first else "Hei!"
        sms = f"{hello} Soittoaikasi on muutettu: soitamme sinulle {when}. Katso tai peru: {link}"
        subject = "Soittoaikasi on muutettu"
    elif language == "sv":
        hello = f"Hej {first}!" if first else "Hej!"
        sms = f"{hello} Din tid är ändrad: vi ringer dig {when}. Visa eller avboka: {link}"
        subject = "Din tid för återuppringning är ändrad"
    else:
        hello = f"Hi {first}!" if first else "Hi!"
        sms = (
            f"{hello} Your callback time has changed: we will call you {when}. "
            f"View or cancel: {link}"
        )
        subject = "Your callback time has changed"
    return Confirmation(sms=sms, email_subject=subject, email_body=_email(language, name, [sms]))


def render_acknowledgement(*, language: Language, name: str | None) -> Confirmation:
    """ "We received your message": an email-only contact, nobody to call back."""
    if language == "fi":
        subject = "Olemme vastaanottaneet viestisi"
        text = "kiitos viestistäsi. Olemme vastaanottaneet sen ja vastaamme sinulle pian."
    elif language == "sv":
        subject = "Vi har tagit emot ditt meddelande"
        text = "tack för ditt meddelande. Vi har tagit emot det och svarar dig snart."
    else:
        subject = "We received your message"
        text = "thank you for your message. We have received it and will get back to you soon."
    return Confirmation(sms="", email_subject=subject, email_body=_email(language, name, [text]))
