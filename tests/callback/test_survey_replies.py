"""Replies to the survey (§13): scores by SMS, the 72-hour window, STOP, and the page."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Survey
from services.callback.selfservice import create_token
from services.callback.settings import CallbackSettings
from services.callback.survey_replies import Score, is_stop, parse_score
from tests.callback.conftest import (
    InsertCallbacks,
    ReadNotificationsFn,
    ReadOutboxFn,
    RunWorker,
    SmsGateway,
)
from tests.callback.test_survey import (
    PHONE,
    SURVEY_FROM,
    make_due,
    reach,
    survey_queue,
    surveys,
)


@pytest.fixture
def settings(settings: CallbackSettings) -> CallbackSettings:
    return settings.model_copy(update={"survey_from": SURVEY_FROM})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", Score(5, None)),
        ("5!", Score(5, None)),
        ("viisi", Score(5, None)),
        ("5 kiitos", Score(5, "kiitos")),
        ("  4, hyvä palvelu ", Score(4, "hyvä palvelu")),
        ("Viisi! Kiitos nopeasta avusta", Score(5, "Kiitos nopeasta avusta")),
        ("fem", Score(5, None)),
        ("Tre tack", Score(3, "tack")),
        ("viis", Score(5, None)),
        ("üks", Score(1, None)),
        ("five", Score(5, None)),
        ("One", Score(1, None)),
        ("kaksi", Score(2, None)),
        ("1", Score(1, None)),
        ("garbage", None),
        ("Kiitos, hyvin meni", None),
        ("10", None),
        ("0", None),
        ("6", None),
        ("4.5", None),
        ("3/5", None),
        ("", None),
    ],
)
def test_what_a_reply_scores(text: str, expected: Score | None) -> None:
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    ("text", "stop"),
    [("STOP", True), ("stop", True), ("LOPETA", True), ("Lopeta.", True), ("STOPP", True),
     ("stop please", False), ("5", False), ("stoppa", False)],
)  # fmt: skip
def test_what_counts_as_stop(text: str, stop: bool) -> None:
    assert is_stop(text) is stop


async def sent_survey(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    **fields: Any,
) -> tuple[str, Survey]:
    """A callback reached by Anna whose survey went out: (callback id, survey)."""
    await survey_queue(client, admin)
    (callback_id,) = await insert_callbacks(1, phone=PHONE, queue="support", **fields)
    await reach(client, auth, callback_id)
    await make_due(sessions)
    await run_worker()
    (survey,) = [s for s in await surveys(sessions) if s.callback_id == callback_id]
    assert survey.status == "sent"
    return callback_id, survey


async def inbound(
    client: AsyncClient, auth: dict[str, str], text: str, *, message_id: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/v1/inbound-sms",
        json={
            "id": message_id or f"in-{secrets.token_hex(6)}",
            "sender": "040 123 4567",
            "to": SURVEY_FROM,
            "text": text,
            "received_at": datetime.now(UTC).isoformat(),
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def events_of(outbox: list[Any], type_: str) -> list[dict[str, Any]]:
    return [r.payload for r in outbox if r.payload["type"] == type_]


@pytest.fixture
async def survey_sent(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
) -> tuple[str, Survey]:
    return await sent_survey(client, auth, admin, insert_callbacks, sessions, run_worker)


async def test_a_score_by_sms_answers_the_survey_with_the_agreed_event(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
    survey_sent: tuple[str, Survey],
) -> None:
    callback_id, survey = survey_sent
    result = await inbound(client, auth, "5 kiitos")

    assert result["result"] == "answered"
    assert (result["survey_id"], result["score"]) == (survey.id, 5)
    (stored,) = await surveys(sessions)
    assert (stored.status, stored.score, stored.comment) == ("answered", 5, "kiitos")
    (event,) = events_of(await read_outbox(), "survey_answered")
    assert (event["channel"], event["direction"]) == ("sms", "inbound")
    assert event["subject"] == {"kind": "callback", "id": callback_id}
    assert event["actor"]["kind"] == "customer"
    assert event["data"] == {
        "score": 5,
        "comment": "kiitos",
        "queue": "support",
        "agent_id": "anna",
        "survey_id": survey.id,
    }
    assert event["customer"]["phone"] == PHONE


async def test_a_message_delivered_twice_is_read_once(
    client: AsyncClient,
    auth: dict[str, str],
    read_outbox: ReadOutboxFn,
    survey_sent: tuple[str, Survey],
) -> None:
    first = await inbound(client, auth, "4", message_id="in-twice")
    again = await inbound(client, auth, "4", message_id="in-twice")

    assert first["result"] == again["result"] == "answered"
    assert again["duplicate"] is True
    assert len(events_of(await read_outbox(), "survey_answered")) == 1


async def test_an_unparseable_reply_is_kept_as_an_inbound_sms_on_the_timeline(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
    survey_sent: tuple[str, Survey],
) -> None:
    callback_id, survey = survey_sent
    result = await inbound(client, auth, "Soittakaa uudestaan huomenna")

    assert result == {"result": "recorded", "survey_id": survey.id, "score": None,
                      "duplicate": False}  # fmt: skip
    (event,) = events_of(await read_outbox(), "x-sms_received")
    assert (event["channel"], event["direction"]) == ("sms", "inbound")
    assert event["subject"] == {"kind": "callback", "id": callback_id}
    assert event["data"]["text"] == "Soittakaa uudestaan huomenna"
    assert [s.status for s in await surveys(sessions)] == ["sent"]
    assert events_of(await read_outbox(), "survey_answered") == []


async def test_a_reply_after_72_hours_is_not_a_score(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
    survey_sent: tuple[str, Survey],
) -> None:
    async with sessions() as session:
        await session.execute(
            update(Survey).values(sent_at=datetime.now(UTC) - timedelta(hours=72, minutes=1))
        )
        await session.commit()
    result = await inbound(client, auth, "5")

    assert result["result"] == "recorded"
    assert events_of(await read_outbox(), "survey_answered") == []
    assert len(events_of(await read_outbox(), "x-sms_received")) == 1


async def test_a_reply_answers_the_numbers_latest_open_survey(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    older, newer, answered = await insert_callbacks(
        3, phone=PHONE, status="completed", outcome="reached"
    )
    rows = [
        (older, now - timedelta(hours=30), "sent"),
        (newer, now - timedelta(hours=2), "sent"),
        (answered, now - timedelta(hours=1), "answered"),
    ]
    async with sessions() as session:
        for callback_id, sent_at, status in rows:
            session.add(
                Survey(
                    callback_id=callback_id,
                    queue="default",
                    agent_id="ben",
                    phone=PHONE,
                    channel="sms",
                    status=status,
                    sent_at=sent_at,
                    created_at=sent_at,
                )
            )
        await session.commit()

    result = await inbound(client, auth, "kolme")

    assert result["result"] == "answered"
    async with sessions() as session:
        scored = (await session.scalars(select(Survey).where(Survey.score.is_not(None)))).all()
    assert [(s.callback_id, s.score) for s in scored] == [(newer, 3)]


@pytest.mark.parametrize("word", ["STOP", "LOPETA", "Stopp"])
async def test_stop_is_acknowledged_once_and_ends_surveys_for_the_number(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    run_worker: RunWorker,
    gateway: SmsGateway,
    survey_sent: tuple[str, Survey],
    word: str,
) -> None:
    gateway.reset()
    first = await inbound(client, auth, word)
    second = await inbound(client, auth, word)
    await run_worker()

    assert (first["result"], second["result"]) == ("stopped", "stopped")
    (ack,) = [n for n in await read_notifications() if n.kind == "stop_confirmed"]
    assert (ack.recipient, ack.status) == (PHONE, "sent")
    (sent,) = gateway.requests
    assert sent.json()["sender"] == SURVEY_FROM
    # The callback's language (fi) answers, whichever word was used.
    assert "emme lähetä sinulle enää kyselyjä" in sent.json()["text"]
    # The open survey takes no score any more ...
    assert (await inbound(client, auth, "5"))["result"] == "recorded"
    assert [s.status for s in await surveys(sessions)] == ["withdrawn"]
    # ... and a later reach sends none, even after 30 days.
    async with sessions() as session:
        await session.execute(
            update(Survey).values(created_at=datetime.now(UTC) - timedelta(days=40))
        )
        await session.commit()
    (later,) = await insert_callbacks(1, phone=PHONE, queue="support")
    await reach(client, auth, later)
    assert [n for n in await read_notifications(later) if n.kind == "survey"] == []


async def test_stop_cancels_a_survey_still_waiting_to_go(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
) -> None:
    await survey_queue(client, admin)
    (callback_id,) = await insert_callbacks(1, phone=PHONE, queue="support")
    await reach(client, auth, callback_id)

    assert (await inbound(client, auth, "LOPETA"))["result"] == "stopped"

    (message,) = [n for n in await read_notifications(callback_id) if n.kind == "survey"]
    assert message.status == "cancelled"
    assert [s.status for s in await surveys(sessions)] == ["withdrawn"]


async def test_a_message_from_an_unknown_number_is_kept(
    client: AsyncClient, auth: dict[str, str], read_outbox: ReadOutboxFn, clean_db: None
) -> None:
    result = await inbound(client, auth, "5")

    assert result["result"] == "recorded"
    (event,) = events_of(await read_outbox(), "x-sms_received")
    assert "subject" not in event
    assert event["customer"] == {"phone": PHONE}


# ----------------------------------------------------------------------------- the page

BROWSER = {"accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
HEADINGS = {
    "fi": "Kuinka hyvin onnistuimme auttamaan?",
    "sv": "Hur väl kunde vi hjälpa dig?",
    "en": "How well did we help?",
    "et": "Kui hästi me teid aitasime?",
}


@pytest.fixture
async def email_survey(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
    settings: CallbackSettings,
) -> tuple[str, Survey, str]:
    callback_id, survey = await sent_survey(
        client,
        auth,
        admin,
        insert_callbacks,
        sessions,
        run_worker,
        consent_sms=False,
        email="maija@example.fi",
    )
    assert survey.channel == "email"
    return callback_id, survey, f"/v1/self/{create_token(settings, callback_id)}"


@pytest.mark.parametrize("language", ["fi", "sv", "en", "et"])
async def test_the_page_asks_the_one_question_without_javascript(
    client: AsyncClient, email_survey: tuple[str, Survey, str], language: str
) -> None:
    _, _, path = email_survey
    page = await client.get(path, params={"lang": language}, headers=BROWSER)

    assert page.status_code == 200
    html = page.text
    assert HEADINGS[language] in html
    assert '<input type="hidden" name="action" value="survey">' in html
    assert re.findall(r'name="score" value="(\d)"', html) == ["1", "2", "3", "4", "5"]
    assert "<script" not in html.lower()
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_answering_on_the_page_records_a_web_score_once(
    client: AsyncClient,
    read_outbox: ReadOutboxFn,
    sessions: async_sessionmaker[AsyncSession],
    email_survey: tuple[str, Survey, str],
) -> None:
    callback_id, survey, path = email_survey
    answer = await client.post(
        path, content="action=survey&score=4&comment=Nopea+apu&lang=en", headers=FORM
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == f"{path}?done=survey&lang=en"
    thanks = await client.get(answer.headers["location"], headers=BROWSER)
    assert "Thank you for your answer!" in thanks.text
    assert 'value="survey"' not in thanks.text
    (event,) = events_of(await read_outbox(), "survey_answered")
    assert (event["channel"], event["direction"]) == ("web", "inbound")
    assert event["subject"] == {"kind": "callback", "id": callback_id}
    assert event["data"] == {
        "score": 4,
        "comment": "Nopea apu",
        "queue": "support",
        "agent_id": "anna",
        "survey_id": survey.id,
    }

    again = await client.post(path, content="action=survey&score=1&lang=en", headers=FORM)
    assert again.status_code == 409
    assert "no longer takes answers" in again.text
    assert [s.score for s in await surveys(sessions)] == [4]


@pytest.mark.parametrize(
    "body", ["action=survey", "action=survey&score=6", "action=survey&score=x"]
)
async def test_a_page_answer_without_a_score_1_to_5_is_refused(
    client: AsyncClient,
    read_outbox: ReadOutboxFn,
    email_survey: tuple[str, Survey, str],
    body: str,
) -> None:
    _, _, path = email_survey
    answer = await client.post(path, content=body, headers=FORM)

    assert answer.status_code == 422
    assert events_of(await read_outbox(), "survey_answered") == []


async def test_the_page_shows_no_question_without_an_open_survey(
    client: AsyncClient,
    insert_callbacks: InsertCallbacks,
    settings: CallbackSettings,
) -> None:
    (callback_id,) = await insert_callbacks(1, phone=PHONE)
    page = await client.get(f"/v1/self/{create_token(settings, callback_id)}", headers=BROWSER)

    assert page.status_code == 200
    assert 'value="survey"' not in page.text


async def test_erasure_forgets_the_surveys_number_and_comment_and_keeps_the_score(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    survey_sent: tuple[str, Survey],
) -> None:
    await inbound(client, auth, "2 jonotin liian kauan")
    request = {"id": "erasure-1", "phones": [PHONE], "emails": [],
               "requested_at": datetime.now(UTC).isoformat()}  # fmt: skip
    answer = await client.post("/v1/erasures", json=request, headers=auth)
    assert answer.status_code == 200, answer.text

    (survey,) = await surveys(sessions)
    assert (survey.phone, survey.comment, survey.score) == ("#erased", None, 2)
