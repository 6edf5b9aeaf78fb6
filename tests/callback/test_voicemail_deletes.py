"""Erasure deletes the recording at the provider (§11) even when Twilio is down at the time:
the erasure completes for the customer, and the worker's sweep deletes the recording later,
until it is done (a 404 counts) or given up after a bounded number of tries."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app
from services.callback.models import Voicemail
from services.callback.settings import CallbackSettings
from services.callback.voicemails import RecordingDeleteMetrics, sweep_deletes
from tests.callback.conftest import RunWorker
from tests.callback.test_voicemail import AUDIO, MAIJA, voicemail_body
from tests.conftest import serve_asgi
from tests.support.twilio_calls import ACCOUNT_SID, AUTH_TOKEN
from tests.support.twilio_recordings import TwilioRecordings, twilio_recordings_api

SID = "RE" + "7" * 32
METRIC = "ringback_voicemail_recording_deletes_total"


@pytest.fixture
def recordings() -> Iterator[TwilioRecordings]:
    with twilio_recordings_api() as api:
        yield api


@pytest.fixture
def configured(settings: CallbackSettings, recordings: TwilioRecordings) -> CallbackSettings:
    return settings.model_copy(
        update={
            "voicemail_twilio_base_url": recordings.url,
            "voicemail_twilio_account_sid": ACCOUNT_SID,
            "voicemail_twilio_auth_token": SecretStr(AUTH_TOKEN),
            "voicemail_delete_max_tries": 3,
        }
    )


@pytest.fixture
async def app(configured: CallbackSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for client in serve_asgi(create_app(configured)):
        yield client


async def stored(sessions: async_sessionmaker[AsyncSession]) -> Voicemail:
    async with sessions() as session:
        (voicemail,) = (await session.scalars(select(Voicemail))).all()
    return voicemail


async def erase_maija_while_twilio_fails(
    app: AsyncClient, auth: dict[str, str], recordings: TwilioRecordings, *, failures: int
) -> dict[str, Any]:
    url = recordings.add(SID, AUDIO)
    left = await app.post(
        "/v1/voicemails", json=voicemail_body("CA70", url=url, transcript="Hei"), headers=auth
    )
    assert left.status_code == 200, left.text
    recordings.fail_deletes(503, times=failures)
    erasure = {"id": "erase-70", "phones": [MAIJA], "requested_at": datetime.now(UTC).isoformat()}
    answer = await app.post("/v1/erasures", json=erasure, headers=auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def later(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


async def test_a_delete_twilio_refused_at_erasure_is_done_by_the_sweep_later(
    app: AsyncClient,
    auth: dict[str, str],
    configured: CallbackSettings,
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    erased = await erase_maija_while_twilio_fails(app, auth, recordings, failures=1)

    # The customer's erasure is done: the person is forgotten, the recording is still owed.
    assert erased["voicemails"] == 1
    waiting = await stored(sessions)
    assert (waiting.phone, waiting.transcript, waiting.deleted_at) == (None, None, None)
    assert waiting.recording_url is not None
    assert SID in recordings.audio
    assert waiting.delete_due_at is not None
    assert waiting.delete_tries == 1

    registry = CollectorRegistry()
    metrics = RecordingDeleteMetrics(registry)
    # Not due yet: the backoff keeps a provider that just failed from being asked again at once.
    early = await sweep_deletes(sessions=sessions, settings=configured, metrics=metrics)
    due = await sweep_deletes(sessions=sessions, settings=configured, metrics=metrics, now=later(1))

    assert sum(early.values()) == 0
    assert dict(due) == {"deleted": 1}
    assert recordings.deleted == [SID]
    assert SID not in recordings.audio
    done = await stored(sessions)
    assert (done.recording_url, done.delete_due_at) == (None, None)
    assert done.deleted_at is not None
    assert registry.get_sample_value(METRIC, {"result": "deleted"}) == 1
    # Nothing left to try: another sweep asks Twilio nothing.
    assert (
        sum((await sweep_deletes(sessions=sessions, settings=configured, now=later(48))).values())
        == 0
    )
    assert recordings.delete_requests == [SID, SID]


async def test_a_recording_twilio_no_longer_has_counts_as_deleted(
    app: AsyncClient,
    auth: dict[str, str],
    configured: CallbackSettings,
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await erase_maija_while_twilio_fails(app, auth, recordings, failures=1)
    # Someone deleted it in Twilio's console meanwhile: the next DELETE is a 404.
    with recordings.lock:
        del recordings.audio[SID]

    result = await sweep_deletes(sessions=sessions, settings=configured, now=later(1))

    assert dict(result) == {"deleted": 1}
    assert recordings.delete_requests == [SID, SID]
    done = await stored(sessions)
    assert done.deleted_at is not None
    assert done.recording_url is None


async def test_the_sweep_gives_up_after_the_last_try_and_says_so_without_the_person(
    app: AsyncClient,
    auth: dict[str, str],
    configured: CallbackSettings,
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = recordings.add(SID, AUDIO)
    await erase_maija_while_twilio_fails(app, auth, recordings, failures=10)
    registry = CollectorRegistry()
    metrics = RecordingDeleteMetrics(registry)
    caplog.set_level(logging.WARNING)

    # Three tries in all (the erasure's and two by the sweep), however long it is swept.
    results = [
        dict(await sweep_deletes(sessions=sessions, settings=configured, metrics=metrics, now=when))
        for when in (later(24), later(48), later(72))
    ]

    assert results == [{"retrying": 1}, {"abandoned": 1}, {}]
    assert recordings.delete_requests == [SID, SID, SID]
    assert SID in recordings.audio
    left = await stored(sessions)
    # Still visible to an operator (the URL and the SID) and never tried again.
    assert (left.recording_url, left.deleted_at, left.delete_due_at) == (url, None, None)
    assert left.delete_abandoned_at is not None
    assert left.delete_tries == 3
    assert registry.get_sample_value(METRIC, {"result": "retrying"}) == 1
    assert registry.get_sample_value(METRIC, {"result": "abandoned"}) == 1
    (line,) = [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict)
        and record.msg.get("event") == "callback.voicemail.delete_abandoned"
    ]
    assert line["recording_sid"] == SID
    assert line["voicemail_id"] == left.id
    # No number, no transcript, no URL (it holds our account SID).
    written = json.dumps(line, default=str)
    assert all(secret not in written for secret in (MAIJA, "Hei", recordings.url, ACCOUNT_SID))


async def test_the_real_worker_retries_the_delete_when_it_starts(
    app: AsyncClient,
    auth: dict[str, str],
    configured: CallbackSettings,
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
) -> None:
    await erase_maija_while_twilio_fails(app, auth, recordings, failures=1)
    async with sessions() as session:
        # The backoff has passed (the worker was down meanwhile, say).
        voicemail = (await session.scalars(select(Voicemail))).one()
        voicemail.delete_due_at = datetime.now(UTC) - timedelta(minutes=1)
        await session.commit()

    # Burst mode: the jobs run at startup, then the worker stops.
    await run_worker(configured)

    assert recordings.deleted == [SID]
    assert (await stored(sessions)).deleted_at is not None
