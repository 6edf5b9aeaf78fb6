"""Voicemails at callback (§11): one per call whatever is delivered twice, called back like a
missed call with the transcript as the message, played to agents from a loopback server
speaking Twilio's Recordings API, and deleted there when the person is erased."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app
from services.callback.models import Callback, Voicemail
from services.callback.settings import CallbackSettings
from tests.callback.helpers import callback_body
from tests.conftest import serve_asgi
from tests.support.twilio_calls import ACCOUNT_SID, AUTH_TOKEN
from tests.support.twilio_recordings import TwilioRecordings, twilio_recordings_api

MAIJA = "+358401234567"
AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 300  # ~77 kB: more than one chunk
MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture
def recordings() -> Iterator[TwilioRecordings]:
    with twilio_recordings_api() as api:
        yield api


@pytest.fixture
async def app(
    settings: CallbackSettings, recordings: TwilioRecordings, clean_db: None
) -> AsyncIterator[AsyncClient]:
    configured = settings.model_copy(
        update={
            "voicemail_twilio_base_url": recordings.url,
            "voicemail_twilio_account_sid": ACCOUNT_SID,
            "voicemail_twilio_auth_token": SecretStr(AUTH_TOKEN),
        }
    )
    async for client in serve_asgi(create_app(configured)):
        yield client


def voicemail_body(
    call_id: str, *, url: str | None, transcript: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """What intake forwards once a voicemail is whole (`callback` asks for the callback)."""
    body: dict[str, Any] = {
        "request_id": f"voicemail:{secrets.token_hex(6)}",
        "provider": "twilio",
        "call_id": call_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "phone": MAIJA,
        "recording_url": url,
        "recording_sid": url.rsplit("/", 1)[-1] if url else None,
        "duration": 14,
        "transcript": transcript,
        "callback": callback_body(
            request_id=f"inbound:{call_id}", phone=MAIJA, email=None, name=None, language=None
        ),
    }
    body.update(overrides)
    return body


async def rows(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[list[Callback], list[Voicemail]]:
    async with sessions() as session:
        callbacks = list((await session.scalars(select(Callback))).all())
        voicemails = list((await session.scalars(select(Voicemail))).all())
    return callbacks, voicemails


async def test_a_voicemail_delivered_twice_is_one_voicemail_and_one_callback(
    app: AsyncClient,
    auth: dict[str, str],
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    url = recordings.add("RE" + "1" * 32, AUDIO)
    body = voicemail_body("CA1", url=url)

    first = await app.post("/v1/voicemails", json=body, headers=auth)
    again = await app.post("/v1/voicemails", json=body, headers=auth)
    # The transcript comes later, on its own.
    later = voicemail_body("CA1", url=None, transcript="Soittakaa minulle", callback=None)
    transcript = await app.post("/v1/voicemails", json=later, headers=auth)

    assert first.status_code == again.status_code == transcript.status_code == 200, first.text
    assert again.json() == first.json() == transcript.json()
    callbacks, voicemails = await rows(sessions)
    assert [(c.id, c.phone, c.contact_count, c.message) for c in callbacks] == [
        (first.json()["callback_id"], MAIJA, 1, "Soittakaa minulle")
    ]
    assert [(v.recording_url, v.duration, v.transcript) for v in voicemails] == [
        (url, 14, "Soittakaa minulle")
    ]
    # The agent finds it on the callback, with where to play it.
    detail = await app.get(f"/v1/callbacks/{callbacks[0].id}", headers=auth)
    assert [(v["id"], v["transcript"], v["audio_url"]) for v in detail.json()["voicemails"]] == [
        (first.json()["id"], "Soittakaa minulle", f"/v1/voicemails/{first.json()['id']}/audio")
    ]


async def test_a_voicemail_joins_the_callback_its_call_already_made(
    app: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    missed = callback_body(request_id="inbound:CA2", phone=MAIJA)
    created = await app.post("/v1/callbacks", json=missed, headers=auth)
    assert created.status_code == 201

    answer = await app.post(
        "/v1/voicemails",
        json=voicemail_body("CA2", url="https://api.twilio.com/x", transcript="Hei"),
        headers=auth,
    )

    assert answer.json()["callback_id"] == created.json()["id"]
    callbacks, _ = await rows(sessions)
    assert [(c.contact_count, c.message) for c in callbacks] == [(1, "Hei")]


async def test_agents_play_the_audio_streamed_from_the_provider(
    app: AsyncClient,
    auth: dict[str, str],
    make_key: MakeKey,
    recordings: TwilioRecordings,
) -> None:
    url = recordings.add("RE" + "2" * 32, AUDIO)
    stored = await app.post("/v1/voicemails", json=voicemail_body("CA3", url=url), headers=auth)
    voicemail_id = stored.json()["id"]
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}

    audio = await app.get(f"/v1/voicemails/{voicemail_id}/audio", headers=reader)
    shown = await app.get(f"/v1/voicemails/{voicemail_id}", headers=reader)
    nobody = await app.get(f"/v1/voicemails/{voicemail_id}/audio")
    unknown = await app.get("/v1/voicemails/nope/audio", headers=reader)

    assert audio.status_code == 200, audio.text
    assert audio.content == AUDIO
    assert audio.headers["content-type"] == "audio/mpeg"
    assert recordings.fetched == ["RE" + "2" * 32]
    assert shown.json()["audio_url"] == f"/v1/voicemails/{voicemail_id}/audio"
    assert nobody.status_code == 401
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")


async def test_our_credentials_go_only_to_the_configured_twilio_origin(
    app: AsyncClient, auth: dict[str, str], make_key: MakeKey, recordings: TwilioRecordings
) -> None:
    elsewhere = "https://recordings.example.net/2010-04-01/Accounts/AC1/Recordings/RE1"
    stored = await app.post(
        "/v1/voicemails", json=voicemail_body("CA4", url=elsewhere), headers=auth
    )
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}

    audio = await app.get(f"/v1/voicemails/{stored.json()['id']}/audio", headers=reader)

    assert audio.status_code == 503
    assert audio.headers["content-type"].startswith("application/problem+json")


async def test_erasure_deletes_the_recording_at_the_provider(
    app: AsyncClient,
    auth: dict[str, str],
    make_key: MakeKey,
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sid = "RE" + "3" * 32
    url = recordings.add(sid, AUDIO)
    stored = await app.post(
        "/v1/voicemails", json=voicemail_body("CA5", url=url, transcript="Hei"), headers=auth
    )
    erasure = {
        "id": "erase-1",
        "phones": ["040 123 4567"],
        "requested_at": datetime.now(UTC).isoformat(),
    }

    answer = await app.post("/v1/erasures", json=erasure, headers=auth)
    again = await app.post("/v1/erasures", json=erasure, headers=auth)

    assert answer.status_code == 200, answer.text
    assert answer.json()["voicemails"] == 1
    assert again.json() == answer.json()
    assert recordings.deleted == [sid]
    assert sid not in recordings.audio
    _, voicemails = await rows(sessions)
    assert [(v.phone, v.transcript, v.recording_url) for v in voicemails] == [(None, None, None)]
    assert all(v.deleted_at is not None for v in voicemails)
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    gone = await app.get(f"/v1/voicemails/{stored.json()['id']}/audio", headers=reader)
    assert gone.status_code == 404


async def test_a_provider_that_will_not_delete_leaves_the_recording_visible(
    app: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A recording the loopback Twilio does not know: DELETE answers 404, i.e. already gone;
    # one at an origin we do not send credentials to cannot be deleted by us at all.
    url = "https://recordings.example.net/2010-04-01/Accounts/AC1/Recordings/RE9"
    await app.post("/v1/voicemails", json=voicemail_body("CA6", url=url), headers=auth)
    erasure = {"id": "erase-2", "phones": [MAIJA], "requested_at": datetime.now(UTC).isoformat()}

    answer = await app.post("/v1/erasures", json=erasure, headers=auth)

    assert answer.status_code == 200
    _, voicemails = await rows(sessions)
    assert [(v.phone, v.recording_url, v.deleted_at) for v in voicemails] == [(None, url, None)]
