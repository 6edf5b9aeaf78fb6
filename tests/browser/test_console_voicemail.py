"""The console's voicemail player (§11) in Chromium: a caller leaves a message through the
generic webhook, the agent claims the callback, presses Play, and the recording plays."""

from __future__ import annotations

import asyncio
import io
import math
import struct
import time
import wave
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.browser.conftest import WEBHOOK_SECRET, snapshot
from tests.browser.test_console_queues import admin, agent_key, put, sign_in
from tests.support.signing import body_of, call_event, signed_headers
from tests.support.stack import Stack
from tests.support.twilio_recordings import TwilioRecordings, twilio_recordings_api

__all__ = ["admin"]

RECORDING_SID = "RE" + "5" * 32
SECONDS = 1.5
CALLER = "+358407654321"


def tone_wav(seconds: float = SECONDS, rate: int = 8000) -> bytes:
    """A small valid WAV: a 440 Hz tone, 16-bit mono."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return out.getvalue()


@pytest.fixture
def recordings() -> Iterator[TwilioRecordings]:
    # The generic webhook's recording URL is fetched as given, with no credentials of ours.
    with twilio_recordings_api(public_media=True) as api:
        yield api


async def leave_voicemail(stack: Stack, url: str) -> None:
    """The PBX reports a message left on a call, as the generic webhook takes it."""
    event = call_event(
        status="voicemail",
        occurred_at=datetime.now(UTC).isoformat(timespec="seconds"),
        recording_url=url,
        duration=int(SECONDS),
        transcript="Soittakaa minulle laskusta",
        **{"from": "040 765 4321"},
    )
    body = body_of(event)
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{stack.url('intake')}/v1/webhooks/generic",
            content=body,
            headers=signed_headers(WEBHOOK_SECRET, body),
        )
    assert answer.status_code == 202, answer.text


async def wait_for_confirmed_callback(admin: httpx.AsyncClient) -> dict[str, Any]:
    """The callback the voicemail asked for, once its confirmation SMS is sent.

    Intake's relay hands the voicemail to callback in its own time, and the worker books and
    confirms it holding the row; a claim meanwhile skips it (`SKIP LOCKED`), as it should.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = (await admin.get("/v1/callbacks", params={"phone": CALLER})).json()
        if listed["items"]:
            found: dict[str, Any] = (
                await admin.get(f"/v1/callbacks/{listed['items'][0]['id']}")
            ).json()
            if [n["status"] for n in found["notifications"]] == ["sent"]:
                return found
        await asyncio.sleep(0.2)
    raise AssertionError("the voicemail's callback was not made and confirmed in 30 s")


async def test_anna_plays_the_voicemail_the_caller_left(
    stack: Stack,
    page: Page,
    admin: httpx.AsyncClient,
    recordings: TwilioRecordings,
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    audio = tone_wav()
    url = recordings.add(RECORDING_SID, audio) + ".wav"
    await put(admin, "/v1/queues/billing", {"name": "Billing"})
    await put(
        admin, "/v1/agents/anna", {"name": "Anna", "queues": ["billing"], "languages": ["fi"]}
    )
    await leave_voicemail(stack, url)
    callback = await wait_for_confirmed_callback(admin)
    assert [v["duration"] for v in callback["voicemails"]] == [int(SECONDS)]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await sign_in(page, stack, await agent_key(sessions, "anna"))
    await page.get_by_test_id("claim-next").click()
    voicemail = page.get_by_test_id("callback-voicemail")
    # When it was left (a time, not the name of a DOM object) and how long it is.
    await expect(voicemail.locator("time")).to_have_count(1)
    await expect(voicemail).not_to_contain_text("[object")
    await expect(voicemail).to_contain_text(f"({int(SECONDS)} s)")
    await expect(page.get_by_test_id("callback-message")).to_contain_text("laskusta")
    await voicemail.get_by_role("button", name="Play").click()

    player = voicemail.locator("audio")
    await expect(player).to_have_count(1)
    # What the agent notices: the recording's length is known and it plays (or has played).
    await page.wait_for_function(
        """el => el.readyState >= 2 && el.duration > 0 && (el.currentTime > 0 || el.ended)""",
        arg=await player.element_handle(),
    )
    duration = await player.evaluate("el => el.duration")
    await snapshot(page, "console-voicemail-playing")
    assert abs(duration - SECONDS) < 0.1
    assert await player.evaluate("el => el.error") is None
    assert recordings.fetched == [RECORDING_SID]

    # Keeping the claim draws the callback again: the player stays, it is not reset to Play.
    await page.get_by_role("button", name="Keep claim").click()
    await expect(page.get_by_test_id("status")).to_contain_text("Claim kept until")
    await expect(voicemail.get_by_role("button", name="Play")).to_have_count(0)
    await expect(player).to_have_count(1)
    assert await player.evaluate("el => el.currentTime > 0 || el.ended")
    assert recordings.fetched == [RECORDING_SID]
    assert errors == []
