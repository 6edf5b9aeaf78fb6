"""Confirmation texts in Finnish, Swedish and English, with times the local way.

Times are shown in the site's zone as people there write them: `klo 15.30`, `ti 24.11.`
(Finnish), `kl. 15.30`, `tis 24.11.` (Swedish), `15.30`, `Tue 24 Nov` (English, as the
contract's own example has it). An SMS greets by first name and stays within
`SMS_MAX_CHARS` (two concatenated segments) with a link of ordinary length; the link is
never cut, since a broken link is worse than a third segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.contracts import Language

SMS_MAX_CHARS = 300
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


def _clock(moment: datetime) -> str:
    return f"{moment.hour}.{moment.minute:02d}"


def _date(language: Language, moment: datetime) -> str:
    weekday = _WEEKDAYS[language][moment.weekday()]
    if language == "en":
        return f"{weekday} {moment.day} {_MONTHS_EN[moment.month - 1]}"
    return f"{weekday} {moment.day}.{moment.month}."


def asap_phrase(language: Language, *, deadline: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "as soon as possible, today by 15.30", naming the day when the deadline is not today."""
    local, today = deadline.astimezone(tz), now.astimezone(tz).date()
    days = (local.date() - today).days
    clock, date = _clock(local), _date(language, local)
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
) -> Confirmation:
    """The confirmation of a new callback: when we will call, and the self-service link."""
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
