"""The generic webhook's `voicemail` (§11): with or without a transcript, sent again with one,
joining the call's missed call, through the real callback and history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import IntakeOutbox
from tests.intake.test_generic_webhook import post_call
from tests.intake.test_relay import history_timeline
from tests.intake.test_voicemail import callbacks_and_voicemails, deliver, peers
from tests.support.live import LiveServer

__all__ = ["deliver", "peers"]  # fixtures shared with the Twilio voicemail tests

MAIJA = "+358401234567"
URL = "https://pbx.example.fi/recordings/call-77.wav"
Rows = Callable[[], Awaitable[list[Any]]]
MakeKey = Callable[..., Awaitable[str]]


async def voicemail(
    intake: AsyncClient, secret: str, call_id: str = "call-77", **overrides: Any
) -> Any:
    return await post_call(
        intake,
        secret,
        call_id=call_id,
        status="voicemail",
        recording_url=URL,
        duration=21,
        **overrides,
    )


async def test_a_voicemail_with_a_transcript(
    intake: AsyncClient,
    webhook_secret: str,
    deliver: Callable[[], Awaitable[None]],
    peers: dict[str, LiveServer],
    make_key: MakeKey,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    answer = await voicemail(intake, webhook_secret, transcript="Soittakaa takaisin")
    again = await voicemail(intake, webhook_secret, transcript="Soittakaa takaisin")

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    assert again.json() == {"id": answer.json()["id"], "status": "duplicate"}
    await deliver()
    callbacks, voicemails = await callbacks_and_voicemails(sessions)
    assert [(c.phone, c.message, c.contact_count) for c in callbacks] == [
        (MAIJA, "Soittakaa takaisin", 1)
    ]
    assert [(v.provider, v.recording_url, v.duration) for v in voicemails] == [("generic", URL, 21)]
    timeline = await history_timeline(peers["history"], await make_key("history:read"), MAIJA)
    [event] = [e for e in timeline if e["type"] == "voicemail"]
    assert event["data"]["recording_url"] == URL
    assert event["data"]["transcript"] == "Soittakaa takaisin"


async def test_a_voicemail_without_a_transcript_then_sent_again_with_one(
    intake: AsyncClient,
    webhook_secret: str,
    deliver: Callable[[], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Rows,
) -> None:
    first = await voicemail(intake, webhook_secret)
    later = await voicemail(intake, webhook_secret, transcript="Laskusta")

    assert first.json()["status"] == "accepted"
    assert later.json()["status"] == "recorded"
    rows: list[IntakeOutbox] = await outbox_rows()
    assert [(row.destination, row.path) for row in rows] == [
        ("history", "/v1/events"),
        ("callback", "/v1/voicemails"),
        ("callback", "/v1/voicemails"),
    ]
    assert rows[1].payload["callback"].get("message") is None
    await deliver()
    callbacks, voicemails = await callbacks_and_voicemails(sessions)
    assert [c.message for c in callbacks] == ["Laskusta"]
    assert [v.transcript for v in voicemails] == ["Laskusta"]


async def test_a_voicemail_joins_the_generic_missed_call_of_its_call(
    intake: AsyncClient,
    webhook_secret: str,
    deliver: Callable[[], Awaitable[None]],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Rows,
) -> None:
    missed = await post_call(intake, webhook_secret, call_id="call-77", status="no_answer")
    await voicemail(intake, webhook_secret)

    rows: list[IntakeOutbox] = await outbox_rows()
    forwarded = next(row.payload for row in rows if row.path == "/v1/voicemails")
    assert forwarded["callback"]["request_id"] == f"inbound:{missed.json()['id']}"
    await deliver()
    callbacks, voicemails = await callbacks_and_voicemails(sessions)
    assert [c.contact_count for c in callbacks] == [1]
    assert [v.callback_id for v in voicemails] == [callbacks[0].id]


async def test_a_voicemail_without_its_recording_url_is_refused_and_kept(
    intake: AsyncClient, webhook_secret: str
) -> None:
    answer = await post_call(intake, webhook_secret, status="voicemail")
    assert answer.status_code == 422
    assert "recording_url" in answer.json()["detail"]


async def test_a_voicemail_from_a_withheld_number_is_only_on_the_timeline(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Rows
) -> None:
    withheld: dict[str, Any] = {"from": None}
    answer = await voicemail(intake, webhook_secret, **withheld)
    assert answer.json()["status"] == "recorded"
    rows: list[IntakeOutbox] = await outbox_rows()
    assert [row.path for row in rows] == ["/v1/events"]
    assert rows[0].payload["data"]["caller_withheld"] is True
