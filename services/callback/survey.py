"""Satisfaction surveys (§13): one question after a final `reached`, sent as a notification.

A survey is a row made when the callback completes, and a `survey` notification due
`survey.delay_minutes` later. The notification path does what every message needs: consent,
the do-not-call list, the SMS regions, the per-number ceiling, and the queue's SMS quiet
hours (the SMS waits for their end). This module adds the survey's own rules: the queue has
it on, the number did not say STOP, at most one per customer in 30 days, and an SMS goes from
`RINGBACK_SURVEY_FROM` (a number customers can reply to). Without SMS consent (or without that
number) a customer with an email address gets the question by email, with the link to the
one-question page.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import events, notify, queues, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Callback, NotificationKind, Survey
from services.callback.selfservice import self_service_link
from services.callback.settings import CallbackSettings
from services.callback.templates import render_survey
from shared.contracts import Channel, Language
from shared.ids import new_id
from shared.vocabulary import Direction, EventType, NotificationChannel, SurveyStatus

log = structlog.get_logger("ringback.callback.survey")

# At most one survey per customer in this long (§13).
ONE_PER = timedelta(days=30)
# Replies count for this long after the question went out.
REPLY_WINDOW = timedelta(hours=72)
# Messages sent from the survey's own number, so that a reply comes back to us.
_FROM_SURVEY_NUMBER = frozenset({NotificationKind.SURVEY, NotificationKind.STOP_CONFIRMED})


def sender_of(settings: CallbackSettings, kind: str) -> str | None:
    """The number an SMS of `kind` goes from: the survey's, or None for the provider's own."""
    return settings.survey_from if kind in _FROM_SURVEY_NUMBER else None


def _channel(settings: CallbackSettings, callback: Callback) -> NotificationChannel | None:
    if callback.consent_sms and settings.survey_from:
        return NotificationChannel.SMS
    if callback.email and callback.consent_email:
        return NotificationChannel.EMAIL
    return None


async def _refusal(
    session: AsyncSession, settings: CallbackSettings, callback: Callback, now: datetime
) -> str | None:
    """Why this customer gets no survey now, or None."""
    if await repository.is_do_not_call(session, callback.phone):
        return "dnc"
    if await repository.is_no_marketing(session, callback.phone):
        return "stop"
    if await repository.surveys_to_since(session, phone=callback.phone, since=now - ONE_PER):
        return "recent_survey"
    if _channel(settings, callback) is None:
        return "no_channel"
    return None


async def schedule(
    session: AsyncSession,
    queue: NotificationQueue,
    *,
    settings: CallbackSettings,
    callback: Callback,
    rules: queues.QueueRules,
    agent_id: str | None,
    now: datetime,
) -> Survey | None:
    """After a final `reached`: the survey and its message, due after the queue's delay."""
    if rules.survey_delay is None:
        return None
    # Two completions of one customer at once must not both pass the 30-day rule.
    await repository.lock(session, "survey", callback.phone)
    reason = await _refusal(session, settings, callback, now)
    if reason is not None:
        log.info("callback.survey.not_sent", callback_id=callback.id, reason=reason)
        return None
    channel = _channel(settings, callback)
    assert channel is not None
    survey = Survey(
        id=new_id(),
        callback_id=callback.id,
        queue=callback.queue,
        agent_id=agent_id,
        phone=callback.phone,
        channel=channel,
        status=SurveyStatus.SCHEDULED,
        created_at=now,
    )
    session.add(survey)
    message = notify.Message(
        NotificationKind.SURVEY,
        f"survey:{survey.id}",
        render_survey(
            language=cast(Language, callback.language),
            name=callback.name,
            link=self_service_link(settings, callback.id),
        ),
        frozenset({channel}),
        send_at=now + rules.survey_delay,
    )
    rows = await notify.send(
        session, queue, settings=settings, callback=callback, messages=[message], now=now
    )
    if not rows:
        # Refused on the way (a ceiling, the SMS regions): not a survey that went.
        survey.status = SurveyStatus.WITHDRAWN
        log.info("callback.survey.not_sent", callback_id=callback.id, reason="refused")
        return None
    survey.notification_id = rows[0].id
    log.info("callback.survey.scheduled", callback_id=callback.id, survey_id=survey.id)
    return survey


def event_data(survey: Survey) -> dict[str, object]:
    """What every survey event carries for the statistics (the agreed shape)."""
    return {"queue": survey.queue, "agent_id": survey.agent_id, "survey_id": survey.id}


async def sent(session: AsyncSession, *, notification_id: str, now: datetime) -> None:
    """The question went out: the survey is open for replies, and `survey_sent` says so."""
    survey = await repository.lock_survey_by_notification(session, notification_id)
    if survey is None or survey.status != SurveyStatus.SCHEDULED:
        return
    survey.status = SurveyStatus.SENT
    survey.sent_at = now
    callback = await repository.find_callback(session, survey.callback_id)
    if callback is None:
        return
    await events.emit(
        session,
        customer=events.customer_of(callback),
        ordering_key=callback.phone,
        type=EventType.SURVEY_SENT,
        channel=Channel(survey.channel),
        direction=Direction.OUTBOUND,
        summary="Satisfaction survey sent",
        data=event_data(survey),
        subject_id=callback.id,
        occurred_at=now,
    )


async def still_wanted(session: AsyncSession, *, notification_id: str) -> bool:
    """Just before the question goes: False (and the survey withdrawn) if the number has since
    gone on the do-not-call list or said STOP, or the survey ended some other way."""
    survey = await repository.lock_survey_by_notification(session, notification_id)
    if survey is None:
        return True
    if survey.status != SurveyStatus.SCHEDULED:
        return False
    if await repository.is_do_not_call(session, survey.phone) or await repository.is_no_marketing(
        session, survey.phone
    ):
        survey.status = SurveyStatus.WITHDRAWN
        log.info("callback.survey.withdrawn", survey_id=survey.id)
        return False
    return True
