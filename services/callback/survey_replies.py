"""Replies to the survey (§13): a score by SMS or on the page, STOP, and everything else.

An inbound SMS (forwarded by intake) is read once, by its inbound id:
- STOP, LOPETA or STOPP puts the number on the no-marketing list, ends its open surveys and
  is answered once, by SMS from the survey's number;
- a score ("5", "5!", "viisi", "5 kiitos", a number word 1-5 in fi/sv/en/et; the rest is the
  comment) answers the number's latest survey sent in the last 72 hours: `survey_answered`;
- anything else is kept on the timeline as an inbound `sms` event, under that survey's
  callback when there is one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import events, notify, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback, Survey
from services.callback.settings import CallbackSettings
from services.callback.survey import REPLY_WINDOW, event_data
from shared.contracts import SURVEY_COMMENT_MAX, InboundSms, Language
from shared.phone import normalize
from shared.vocabulary import (
    LANGUAGES,
    Channel,
    Direction,
    EventType,
    ExtensionEventType,
    SurveyStatus,
)

log = structlog.get_logger("ringback.callback.survey")

# STOP and its Finnish and Swedish words, as the whole message (any case, any punctuation).
STOP_WORDS: Final = frozenset({"stop", "lopeta", "stopp"})
# Number words 1-5 in the languages we speak (fi, sv, en, et).
NUMBER_WORDS: Final[dict[str, int]] = {
    **{"yksi": 1, "kaksi": 2, "kolme": 3, "neljä": 4, "viisi": 5},
    **{"en": 1, "ett": 1, "två": 2, "tre": 3, "fyra": 4, "fem": 5},
    **{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5},
    **{"üks": 1, "kaks": 2, "kolm": 3, "neli": 4, "viis": 5},
}
# A digit 1-5 standing alone: "5", "5!", "5 kiitos", but not "10", "4.5" or "3/5".
_DIGIT = re.compile(r"([1-5])(?![0-9]|[.,/][0-9])")
_WORD = re.compile(r"([^\W\d_]+)")
_LEADING = re.compile(r"^[\s\W_]+")
# What the processed-requests table files an inbound SMS under.
_PROCESSED_KIND: Final = "inbound_sms"
COMMENT_MAX: Final = SURVEY_COMMENT_MAX


@dataclass(frozen=True, slots=True)
class Score:
    score: int
    comment: str | None


def _comment(rest: str) -> str | None:
    text = _LEADING.sub("", rest).strip()
    return text[:COMMENT_MAX] or None


def parse_score(text: str) -> Score | None:
    """The score a reply gives, with the rest as its comment; None if it gives none."""
    reply = unicodedata.normalize("NFC", text).strip()
    digit = _DIGIT.match(reply)
    if digit is not None:
        return Score(int(digit.group(1)), _comment(reply[digit.end() :]))
    word = _WORD.match(reply)
    if word is not None and word.group(1).lower() in NUMBER_WORDS:
        return Score(NUMBER_WORDS[word.group(1).lower()], _comment(reply[word.end() :]))
    return None


def is_stop(text: str) -> bool:
    word = re.sub(r"[\W_]+", "", text.strip()).lower()
    return word in STOP_WORDS


# Without a callback to read the language from, the word says it.
_STOP_LANGUAGES: Final[dict[str, Language]] = {"lopeta": "fi", "stopp": "sv"}


def _stop_language(text: str, callback: Callback | None) -> Language:
    if callback is not None and callback.language in LANGUAGES:
        return callback.language
    return _STOP_LANGUAGES.get(re.sub(r"[\W_]+", "", text.strip()).lower(), "en")


async def answer(
    session: AsyncSession,
    *,
    survey: Survey,
    score: Score,
    channel: Channel,
    now: datetime,
) -> None:
    """Record the score on the survey and on the timeline (`survey_answered`)."""
    survey.status = SurveyStatus.ANSWERED
    survey.answered_at = now
    survey.score = score.score
    survey.comment = score.comment
    callback = await repository.find_callback(session, survey.callback_id)
    if callback is None:
        return
    await events.emit(
        session,
        customer=events.customer_of(callback),
        ordering_key=callback.phone,
        type=EventType.SURVEY_ANSWERED,
        channel=channel,
        direction=Direction.INBOUND,
        summary=f"Survey answered: {score.score}/5",
        data={"score": score.score, "comment": score.comment, **event_data(survey)},
        subject_id=callback.id,
        actor={"kind": "customer"},
        occurred_at=now,
    )
    log.info("callback.survey.answered", survey_id=survey.id, score=score.score)


async def _kept(
    session: AsyncSession,
    *,
    message: InboundSms,
    phone: str,
    callback: Callback | None,
    extra: dict[str, Any],
) -> None:
    """An inbound SMS that is no score: on the timeline as it came."""
    customer = events.customer_of(callback) if callback is not None else {"phone": phone}
    await events.emit(
        session,
        customer=customer,
        ordering_key=phone,
        type=ExtensionEventType.SMS_RECEIVED,
        channel=Channel.SMS,
        direction=Direction.INBOUND,
        summary="SMS received",
        data={"text": message.text, "inbound_id": message.id, **extra},
        subject_id=callback.id if callback is not None else None,
        actor={"kind": "customer"},
        occurred_at=message.received_at,
    )


async def receive(
    session: AsyncSession,
    queue: NotificationQueue,
    *,
    settings: CallbackSettings,
    message: InboundSms,
    now: datetime,
) -> dict[str, Any]:
    """Read one inbound SMS once; what came of it (`answered`, `stopped`, `recorded`)."""
    done = await repository.get_processed(session, _PROCESSED_KIND, message.id)
    if done is not None:
        return {**done.result, "duplicate": True}
    phone = normalize(message.sender, settings.default_region)
    result: dict[str, Any]
    if phone is None:
        result = {"result": "ignored", "reason": "the sender is not a phone number"}
    elif is_stop(message.text):
        result = await _stop(
            session, queue, settings=settings, message=message, phone=phone, now=now
        )
    else:
        result = await _reply(session, message=message, phone=phone, now=now)
    if not await repository.add_processed(
        session, kind=_PROCESSED_KIND, key=message.id, result=result, now=now
    ):
        # The same message read at the same moment by another request: its reading counts.
        await session.rollback()
        done = await repository.get_processed(session, _PROCESSED_KIND, message.id)
        return {**(done.result if done is not None else result), "duplicate": True}
    return result


async def _stop(
    session: AsyncSession,
    queue: NotificationQueue,
    *,
    settings: CallbackSettings,
    message: InboundSms,
    phone: str,
    now: datetime,
) -> dict[str, Any]:
    first = await repository.add_no_marketing(session, phone, now)
    unsent = await repository.withdraw_surveys(session, phone)
    await repository.cancel_unsent_notifications(session, unsent)
    latest = await repository.latest_callback_of(session, phone)
    if first:
        await notify.stop_confirmation(
            session,
            queue,
            settings=settings,
            phone=phone,
            message_id=message.id,
            language=_stop_language(message.text, latest),
            name=latest.name if latest is not None else None,
            now=now,
        )
    await _kept(session, message=message, phone=phone, callback=latest, extra={"stop": True})
    log.info("callback.survey.stop", first=first)
    return {"result": "stopped", "first": first}


async def _reply(
    session: AsyncSession, *, message: InboundSms, phone: str, now: datetime
) -> dict[str, Any]:
    survey = await repository.latest_open_survey(
        session, phone=phone, sent_after=now - REPLY_WINDOW
    )
    score = parse_score(message.text)
    if survey is not None and score is not None:
        await answer(session, survey=survey, score=score, channel=Channel.SMS, now=now)
        return {"result": "answered", "survey_id": survey.id, "score": score.score}
    callback = (
        await repository.find_callback(session, survey.callback_id)
        if survey is not None
        else await repository.latest_callback_of(session, phone)
    )
    extra = {"survey_id": survey.id} if survey is not None else {}
    await _kept(session, message=message, phone=phone, callback=callback, extra=extra)
    return {"result": "recorded", **extra}


# ----------------------------------------------------------------------------- the page


async def open_on_page(
    session: AsyncSession, *, callback_id: str, now: datetime, lock: bool = False
) -> Survey | None:
    """The callback's survey while it takes an answer (sent, unanswered, within 72 h)."""
    return await repository.lock_open_survey_of_callback(
        session, callback_id, sent_after=now - REPLY_WINDOW, lock=lock
    )


async def answer_on_page(
    session: AsyncSession, *, callback_id: str, score: Score, now: datetime
) -> bool:
    """The one-question page's answer (channel `web`); False when the survey takes none."""
    survey = await open_on_page(session, callback_id=callback_id, now=now, lock=True)
    if survey is None:
        return False
    await answer(session, survey=survey, score=score, channel=Channel.WEB, now=now)
    return True
