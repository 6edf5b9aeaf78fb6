"""Voicemail through Twilio (§11), from intake to the real callback and history: the three
requests in any order and twice, one timeline entry and one callback, the transcript as the
callback's message, the voicemail joining its call's missed call, and the `<Record>` TwiML."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app as create_callback
from services.callback.models import Callback, Voicemail
from services.callback.settings import CallbackSettings
from services.history.app import create_app as create_history
from services.history.settings import HistorySettings
from services.intake.app import create_app
from services.intake.models import CallLeg, IntakeOutbox
from services.intake.settings import IntakeSettings
from services.intake.telephony.base import TRANSCRIPT_MAX_CHARS
from shared.outbox import OutboxRelay
from tests.conftest import serve_asgi
from tests.intake.test_relay import history_timeline
from tests.intake.test_twiml_wait import twilio_post, twiml
from tests.support.infra import free_port
from tests.support.live import LiveServer

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "5" * 32
RECORDING = "RE" + "a" * 32
TRANSCRIPTION = "TR" + "b" * 32
RECORDING_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}"
FINNISH = "+358401234567"
DIALED = "+358923123456"
WORDS = "Hello, this is Maija. Please call me about my invoice."
Rows = Callable[[], Awaitable[list[Any]]]


def record_action(**extra: str) -> dict[str, str]:
    """What Twilio posts to `<Record action>` when the caller has finished (it has `From`)."""
    return {
        "CallSid": CALL,
        "AccountSid": ACCOUNT,
        "From": FINNISH,
        "To": DIALED,
        "Direction": "inbound",
        "CallStatus": "in-progress",
        "RecordingUrl": RECORDING_URL,
        "RecordingSid": RECORDING,
        "RecordingDuration": "14",
        "Digits": "hangup",
        **extra,
    }


def recording_status(status: str = "completed") -> dict[str, str]:
    """The `recordingStatusCallback`: the recording, and no caller number."""
    return {
        "AccountSid": ACCOUNT,
        "CallSid": CALL,
        "RecordingSid": RECORDING,
        "RecordingUrl": RECORDING_URL,
        "RecordingStatus": status,
        "RecordingDuration": "14",
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
        "RecordingStartTime": "Sun, 06 Dec 2026 10:00:00 +0000",
    }


def transcription(text: str = WORDS) -> dict[str, str]:
    """The `transcribeCallback` (it carries `From` and `To`)."""
    return {
        "AccountSid": ACCOUNT,
        "CallSid": CALL,
        "From": FINNISH,
        "To": DIALED,
        "RecordingSid": RECORDING,
        "RecordingUrl": RECORDING_URL,
        "TranscriptionSid": TRANSCRIPTION,
        "TranscriptionText": text,
        "TranscriptionStatus": "completed",
        "TranscriptionType": "fast",
        "url": "https://ringback.example.com/v1/webhooks/twilio/transcription",
    }


ACTION = "/v1/webhooks/twilio/voicemail?queue=support"
RECORDING_CALLBACK = "/v1/webhooks/twilio/recording?queue=support"
TRANSCRIPTION_CALLBACK = "/v1/webhooks/twilio/transcription?queue=support"


@pytest.fixture
async def peers(settings_kwargs: dict[str, Any]) -> AsyncIterator[dict[str, LiveServer]]:
    """Callback and history as real HTTP servers."""
    servers = {
        "callback": LiveServer(create_callback(CallbackSettings(**settings_kwargs)), free_port()),
        "history": LiveServer(create_history(HistorySettings(**settings_kwargs)), free_port()),
    }
    for server in servers.values():
        await server.start()
    yield servers
    for server in servers.values():
        await server.stop()


@pytest.fixture
async def deliver(
    peers: dict[str, LiveServer], sessions: async_sessionmaker[AsyncSession], internal_key: str
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Run the outbox relay until everything intake stored has reached callback and history."""
    clients = {
        name: httpx.AsyncClient(
            base_url=server.url, headers={"authorization": f"Bearer {internal_key}"}, timeout=10
        )
        for name, server in peers.items()
    }
    relay = OutboxRelay(model=IntakeOutbox, session_factory=sessions, clients=clients)

    async def run() -> None:
        while await relay.run_once():
            pass

    yield run
    for client in clients.values():
        await client.aclose()


async def callbacks_and_voicemails(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[list[Callback], list[Voicemail]]:
    async with sessions() as session:
        callbacks = list((await session.scalars(select(Callback))).all())
        voicemails = list((await session.scalars(select(Voicemail))).all())
    return callbacks, voicemails


def forwards(rows: list[IntakeOutbox]) -> list[tuple[str, str]]:
    return [(row.destination, row.path) for row in rows]


async def test_duplicate_recording_and_transcription_callbacks_make_one_event_and_one_callback(
    intake: AsyncClient,
    deliver: Callable[[], Awaitable[None]],
    peers: dict[str, LiveServer],
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Rows,
) -> None:
    action = await twilio_post(intake, ACTION, record_action())
    # The call ends with the action's answer: valid TwiML, nothing more to do.
    assert [child.tag for child in twiml(action)] == []
    for form, url in (
        (recording_status(), RECORDING_CALLBACK),
        (recording_status(), RECORDING_CALLBACK),  # Twilio's retry
        (transcription(), TRANSCRIPTION_CALLBACK),
        (transcription(), TRANSCRIPTION_CALLBACK),
    ):
        answer = await twilio_post(intake, url, form)
        assert answer.status_code == 202, answer.text

    # Forwarded once when whole, and the transcript (come later) once after it.
    assert forwards(await outbox_rows()) == [
        ("history", "/v1/events"),
        ("callback", "/v1/voicemails"),
        ("callback", "/v1/voicemails"),
    ]
    await deliver()

    timeline = await history_timeline(peers["history"], await make_key("history:read"), FINNISH)
    voicemails = [event for event in timeline if event["type"] == "voicemail"]
    assert len(voicemails) == 1, timeline
    data = voicemails[0]["data"]
    assert data["recording_url"] == RECORDING_URL
    assert data["duration"] == 14
    assert data["queue"] == "support"
    assert "missed_call" not in {event["type"] for event in timeline}
    callbacks, stored = await callbacks_and_voicemails(sessions)
    assert len(callbacks) == 1
    assert callbacks[0].phone == FINNISH
    assert callbacks[0].contact_count == 1
    assert callbacks[0].message == WORDS
    assert [(v.callback_id, v.recording_sid, v.duration, v.transcript) for v in stored] == [
        (callbacks[0].id, RECORDING, 14, WORDS)
    ]


async def test_a_transcript_before_the_recording_status_callback_is_in_the_voicemail(
    intake: AsyncClient,
    deliver: Callable[[], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Rows,
    inbound_rows: Rows,
) -> None:
    first = await twilio_post(intake, TRANSCRIPTION_CALLBACK, transcription())
    assert first.status_code == 202
    assert first.json()["status"] == "recorded"
    # The transcript alone is not the voicemail: the recording is still to come.
    assert await outbox_rows() == []

    second = await twilio_post(intake, RECORDING_CALLBACK, recording_status())
    assert second.json()["status"] == "accepted"
    rows: list[IntakeOutbox] = await outbox_rows()
    assert forwards(rows) == [("history", "/v1/events"), ("callback", "/v1/voicemails")]
    event, voicemail = (row.payload for row in rows)
    assert event["type"] == "voicemail"
    assert event["data"]["transcript"] == WORDS
    assert voicemail["transcript"] == voicemail["callback"]["message"] == WORDS
    # The action arriving last (or again) adds nothing.
    await twilio_post(intake, ACTION, record_action())
    assert len(await outbox_rows()) == 2

    await deliver()
    callbacks, stored = await callbacks_and_voicemails(sessions)
    assert [(c.phone, c.message) for c in callbacks] == [(FINNISH, WORDS)]
    assert [v.transcript for v in stored] == [WORDS]


async def test_the_recording_waits_for_the_callers_number_from_the_action(
    intake: AsyncClient, outbox_rows: Rows, inbound_rows: Rows
) -> None:
    waiting = await twilio_post(intake, RECORDING_CALLBACK, recording_status())
    assert waiting.json()["status"] == "recorded"
    assert await outbox_rows() == []
    [stored] = await inbound_rows()
    assert stored.summary["voicemail"] == "waiting for the caller's number"

    await twilio_post(intake, ACTION, record_action())

    rows: list[IntakeOutbox] = await outbox_rows()
    assert forwards(rows) == [("history", "/v1/events"), ("callback", "/v1/voicemails")]
    assert rows[1].payload["phone"] == FINNISH
    assert rows[1].payload["recording_url"] == RECORDING_URL


async def test_no_recording_is_no_voicemail(intake: AsyncClient, outbox_rows: Rows) -> None:
    await twilio_post(intake, ACTION, record_action())
    absent = await twilio_post(intake, RECORDING_CALLBACK, recording_status("absent"))
    assert absent.json()["status"] == "recorded"
    assert await outbox_rows() == []


async def test_an_oversized_transcript_is_cut(intake: AsyncClient, outbox_rows: Rows) -> None:
    long = "Laskusta kysyttävää." * 300
    await twilio_post(intake, ACTION, record_action())
    await twilio_post(intake, TRANSCRIPTION_CALLBACK, transcription(long))
    await twilio_post(intake, RECORDING_CALLBACK, recording_status())

    rows: list[IntakeOutbox] = await outbox_rows()
    voicemail = rows[-1].payload
    assert len(voicemail["transcript"]) == TRANSCRIPT_MAX_CHARS
    assert long.startswith(voicemail["transcript"])


@pytest.mark.parametrize("url", [ACTION, RECORDING_CALLBACK, TRANSCRIPTION_CALLBACK])
async def test_a_bad_signature_is_403_and_nothing_is_kept(
    intake: AsyncClient, inbound_rows: Rows, url: str
) -> None:
    answer = await twilio_post(intake, url, recording_status(), token="not-the-token")
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert await inbound_rows() == []


async def test_an_unusable_recording_callback_is_kept_and_refused(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    form = {**recording_status(), "RecordingDuration": "very long"}
    answer = await twilio_post(intake, RECORDING_CALLBACK, form)
    assert answer.status_code == 422
    [kept] = await inbound_rows()
    assert (kept.status, kept.id) == ("rejected", answer.json()["inbound_id"])


async def test_the_voicemail_joins_its_calls_missed_call(
    intake: AsyncClient,
    deliver: Callable[[], Awaitable[None]],
    peers: dict[str, LiveServer],
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Rows,
) -> None:
    dial = {
        "CallSid": CALL,
        "AccountSid": ACCOUNT,
        "From": FINNISH,
        "To": DIALED,
        "Direction": "inbound",
        "DialCallStatus": "no-answer",
        "DialCallSid": "CA" + "6" * 32,
    }
    missed = await twilio_post(intake, "/v1/webhooks/twilio?queue=support&voicemail=1", dial)

    # Nobody answered: the caller is sent on to leave a message.
    root = twiml(missed)
    redirect = root.find("Redirect")
    assert redirect is not None, ET.tostring(root)
    assert redirect.text == "/v1/twiml/voicemail?queue=support"
    missed_id = missed.headers["x-ringback-inbound-id"]
    await twilio_post(intake, ACTION, record_action())
    await twilio_post(intake, RECORDING_CALLBACK, recording_status())
    # The parent call's final status changes nothing.
    await twilio_post(
        intake,
        "/v1/webhooks/twilio",
        {"CallSid": CALL, "From": FINNISH, "To": DIALED, "CallStatus": "no-answer"},
    )

    rows: list[IntakeOutbox] = await outbox_rows()
    voicemail = next(row.payload for row in rows if row.path == "/v1/voicemails")
    assert voicemail["callback"]["request_id"] == f"inbound:{missed_id}"
    await deliver()
    callbacks, stored = await callbacks_and_voicemails(sessions)
    assert [(c.contact_count, c.phone) for c in callbacks] == [(1, FINNISH)]
    assert [v.callback_id for v in stored] == [callbacks[0].id]
    types = [
        e["type"]
        for e in await history_timeline(peers["history"], await make_key("history:read"), FINNISH)
    ]
    assert sorted(t for t in types if t in {"missed_call", "voicemail"}) == [
        "missed_call",
        "voicemail",
    ]


async def test_a_dial_action_without_voicemail_ends_the_call(intake: AsyncClient) -> None:
    dial = {
        "CallSid": CALL,
        "From": FINNISH,
        "To": DIALED,
        "Direction": "inbound",
        "DialCallStatus": "no-answer",
    }
    root = twiml(await twilio_post(intake, "/v1/webhooks/twilio?queue=support", dial))
    assert list(root) == []


# ----------------------------------------------------------------------------- the TwiML


async def _record(intake: AsyncClient) -> ET.Element:
    root = twiml(await twilio_post(intake, "/v1/twiml/voicemail?queue=support", record_action()))
    assert [child.tag for child in root] == ["Say", "Record"], ET.tostring(root)
    record = root[1]
    base = "https://ringback.example.com/v1/webhooks/twilio"
    assert record.get("action") == f"{base}/voicemail?queue=support"
    assert record.get("recordingStatusCallback") == f"{base}/recording?queue=support"
    assert record.get("maxLength") == "120"
    return root


async def test_the_record_twiml_transcribes_only_for_an_english_queue(
    intake_settings: IntakeSettings,
    peers: dict[str, LiveServer],
    make_key: Callable[..., Awaitable[str]],
    clean_db: None,
) -> None:
    admin = {"Authorization": f"Bearer {await make_key('admin')}"}
    async with httpx.AsyncClient(base_url=peers["callback"].url, headers=admin) as callback:
        put = await callback.put("/v1/queues/support", json={"name": "S", "languages": ["en"]})
        assert put.status_code in (200, 201), put.text
    settings = intake_settings.model_copy(update={"callback_url": peers["callback"].url})
    async for intake in serve_asgi(create_app(settings)):
        record = (await _record(intake))[1]
        assert record.get("transcribe") == "true"
        assert record.get("transcribeCallback") == (
            "https://ringback.example.com/v1/webhooks/twilio/transcription?queue=support"
        )
        async with httpx.AsyncClient(base_url=peers["callback"].url, headers=admin) as callback:
            put = await callback.put("/v1/queues/support", json={"name": "S", "languages": ["fi"]})
            assert put.status_code == 200, put.text
        finnish = await _record(intake)
        assert finnish[1].get("transcribe") is None
        assert finnish[0].get("language") == "fi-FI"


async def test_without_callback_the_record_twiml_does_not_transcribe(intake: AsyncClient) -> None:
    root = await _record(intake)
    assert root[1].get("transcribe") is None


async def test_erasure_forgets_the_transcript_kept_on_the_call(
    intake: AsyncClient, internal_key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A transcript waiting for its recording is kept on the call's leg until then.
    await twilio_post(intake, TRANSCRIPTION_CALLBACK, transcription())
    erasure = {"id": "e-vm", "phones": [FINNISH], "requested_at": "2026-12-06T10:00:00Z"}

    answer = await intake.post(
        "/v1/erasures", json=erasure, headers={"Authorization": f"Bearer {internal_key}"}
    )

    assert answer.status_code == 200, answer.text
    async with sessions() as session:
        legs = (await session.scalars(select(CallLeg))).all()
    assert [(leg.caller, leg.transcript, leg.recording_url) for leg in legs] == [(None, None, None)]
