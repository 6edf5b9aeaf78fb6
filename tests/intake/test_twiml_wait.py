"""The caller waiting in a Twilio queue (§11), at intake: the offer spoken in their language
from callback's estimate (a real callback on loopback), hold music whenever that cannot be
done, and "press 1" stored as a callback request that no later hang-up turns into a missed call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

import httpx
import pytest
from httpx import AsyncClient
from twilio.request_validator import RequestValidator

from services.callback.app import create_app as create_callback
from services.callback.settings import CallbackSettings
from services.intake.app import create_app
from services.intake.models import Inbound, IntakeOutbox
from services.intake.settings import IntakeSettings
from tests.conftest import serve_asgi
from tests.intake.conftest import PUBLIC_BASE_URL, TWILIO_TOKEN
from tests.support.infra import free_port
from tests.support.live import LiveServer

WAIT = "/v1/twiml/wait?queue=billing"
CALL_SID = "CA" + "7" * 32
FINNISH = "+358401234567"
MakeKey = Callable[..., Awaitable[str]]
Rows = Callable[[], Awaitable[list[Any]]]


@pytest.fixture
async def callback_server(settings_kwargs: dict[str, Any]) -> AsyncIterator[LiveServer]:
    server = LiveServer(create_callback(CallbackSettings(**settings_kwargs)), free_port())
    yield server
    await server.stop()


@pytest.fixture
async def intake_with_callback(
    intake_settings: IntakeSettings, callback_server: LiveServer, clean_db: None
) -> AsyncIterator[AsyncClient]:
    # These tests read what callback offers, not how fast: a loaded test machine may take
    # over the production second for a fresh callback's first estimate (the default is
    # held by `test_callback_that_does_not_answer_within_a_second_is_music`).
    settings = intake_settings.model_copy(
        update={"callback_url": callback_server.url, "offer_timeout_seconds": 10.0}
    )
    async for client in serve_asgi(create_app(settings)):
        yield client


@pytest.fixture
async def billing(callback_server: LiveServer, make_key: MakeKey) -> LiveServer:
    """Callback running, with a queue `billing` open around the clock with two agents."""
    await callback_server.start()
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    plan = {
        "timezone": "Europe/Helsinki",
        "business_hours": {day: [{"start": "00:00", "end": "24:00"}] for day in days},
        "default_agents": 2,
    }
    admin = {"Authorization": f"Bearer {await make_key('admin')}"}
    async with httpx.AsyncClient(base_url=callback_server.url) as client:
        response = await client.put(
            "/v1/queues/billing",
            json={"name": "Laskutus", "capacity": plan, "offer": {"min_wait_seconds": 30}},
            headers=admin,
        )
    assert response.status_code in (200, 201), response.text
    return callback_server


def waiting(caller: str = FINNISH, queue_time: int = 45, **extra: str) -> dict[str, str]:
    """What Twilio posts to the `waitUrl` while the caller waits."""
    return {
        "CallSid": CALL_SID,
        "AccountSid": "AC" + "0" * 32,
        "From": caller,
        "To": "+358923123456",
        "QueueSid": "QU" + "1" * 32,
        "QueueTime": str(queue_time),
        "QueuePosition": "3",
        "AvgQueueTime": "240",
        "CurrentQueueSize": "4",
        "MaxQueueSize": "100",
        **extra,
    }


async def twilio_post(
    intake: AsyncClient, url: str, form: dict[str, str], token: str = TWILIO_TOKEN
) -> httpx.Response:
    """Post as Twilio does: to a path, or to the absolute URL a TwiML document gave."""
    absolute = url if url.startswith("http") else PUBLIC_BASE_URL + url
    signature = RequestValidator(token).compute_signature(absolute, form)
    path = absolute.removeprefix(PUBLIC_BASE_URL)
    return await intake.post(path, data=form, headers={"x-twilio-signature": signature})


def twiml(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content)  # well-formed, or this raises


def is_hold_music(root: ET.Element) -> bool:
    return root.tag == "Response" and [child.tag for child in root] in (["Play"], ["Pause"])


# ----------------------------------------------------------------------------- the offer


@pytest.mark.parametrize(
    ("caller", "lang", "voice_language", "words"),
    [
        (FINNISH, None, "fi-FI", "Paina 1"),
        ("+46701234567", None, "sv-SE", "Tryck 1"),
        ("+447911123456", None, "en-GB", "Press 1"),
        # The wait URL may name the language (a Studio flow that asked for it).
        (FINNISH, "sv", "sv-SE", "Tryck 1"),
    ],
)
async def test_the_offer_is_spoken_in_the_callers_language(
    intake_with_callback: AsyncClient,
    billing: LiveServer,
    caller: str,
    lang: str | None,
    voice_language: str,
    words: str,
) -> None:
    url = WAIT + (f"&lang={lang}" if lang else "")
    before = datetime.now(UTC)

    root = twiml(await twilio_post(intake_with_callback, url, waiting(caller)))

    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root)
    assert gather.get("numDigits") == "1"
    say = gather.find("Say")
    assert say is not None
    assert say.text is not None
    assert say.get("language") == voice_language
    assert words in say.text
    # Two free agents and nobody waiting: called back at once, said as "about 2 minutes".
    assert "2" in say.text
    action = urlsplit(gather.get("action", ""))
    assert f"{action.scheme}://{action.netloc}" == PUBLIC_BASE_URL
    query = {name: values[0] for name, values in parse_qs(action.query).items()}
    assert query["queue"] == "billing"
    assert query["lang"] == voice_language[:2]
    entered = datetime.fromisoformat(query["queued_at"])
    assert before - timedelta(seconds=46) <= entered <= datetime.now(UTC) - timedelta(seconds=44)
    # Nothing pressed: back to the music.
    assert [child.tag for child in root][1:] == ["Pause"]


async def test_before_min_wait_seconds_the_caller_hears_only_music(
    intake_with_callback: AsyncClient, billing: LiveServer
) -> None:
    root = twiml(await twilio_post(intake_with_callback, WAIT, waiting(queue_time=29)))
    assert is_hold_music(root)


@pytest.mark.parametrize(
    ("url", "caller"),
    [
        ("/v1/twiml/wait?queue=nowhere", FINNISH),  # callback answers 404
        ("/v1/twiml/wait?queue=Not%20A%20Key", FINNISH),
        (WAIT, "anonymous"),  # withheld: never offered
    ],
)
async def test_no_offer_is_music_never_an_error(
    intake_with_callback: AsyncClient, billing: LiveServer, url: str, caller: str
) -> None:
    root = twiml(await twilio_post(intake_with_callback, url, waiting(caller)))
    assert is_hold_music(root)


async def test_callback_down_is_music(intake_with_callback: AsyncClient) -> None:
    root = twiml(await twilio_post(intake_with_callback, WAIT, waiting()))
    assert is_hold_music(root)


async def test_callback_that_does_not_answer_within_a_second_is_music(
    intake_settings: IntakeSettings, clean_db: None
) -> None:
    # Accepts the connection and never answers.
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = intake_settings.model_copy(
        update={"callback_url": f"http://127.0.0.1:{port}", "twilio_hold_music_url": "https://x/m"}
    )
    assert settings.offer_timeout_seconds == 1.0  # the production default is what is tested
    try:
        async for intake in serve_asgi(create_app(settings)):
            root = twiml(await asyncio.wait_for(twilio_post(intake, WAIT, waiting()), 10))
            assert [(child.tag, child.text) for child in root] == [("Play", "https://x/m")]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_bad_signature_is_403(intake_with_callback: AsyncClient) -> None:
    response = await twilio_post(intake_with_callback, WAIT, waiting(), token="not-the-token")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_intake_forwards_the_offer_from_callback(
    intake_with_callback: AsyncClient, billing: LiveServer, make_key: MakeKey
) -> None:
    key = {"Authorization": f"Bearer {await make_key('intake:write')}"}
    response = await intake_with_callback.get(
        "/v1/queues/billing/offer?from=anonymous", headers=key
    )
    assert response.status_code == 200, response.text
    assert (response.json()["offer"], response.json()["reason"]) == (False, "withheld")
    unauthenticated = await intake_with_callback.get("/v1/queues/billing/offer")
    assert unauthenticated.status_code == 401


# ----------------------------------------------------------------------------- pressing


async def _offered_action(intake: AsyncClient) -> str:
    root = twiml(await twilio_post(intake, WAIT, waiting()))
    gather = root.find("Gather")
    assert gather is not None
    return gather.get("action", "")


async def test_pressing_1_books_the_callback_and_a_later_hang_up_is_no_missed_call(
    intake_with_callback: AsyncClient,
    billing: LiveServer,
    outbox_rows: Rows,
    inbound_rows: Rows,
) -> None:
    action = await _offered_action(intake_with_callback)
    pressed = waiting(Digits="1")

    root = twiml(await twilio_post(intake_with_callback, action, pressed))

    assert [child.tag for child in root] == ["Say", "Leave"]
    assert root[0].get("language") == "fi-FI"
    rows: list[IntakeOutbox] = await outbox_rows()
    assert [(row.destination, row.path) for row in rows] == [
        ("history", "/v1/events"),
        ("callback", "/v1/callbacks"),
    ]
    # The agent sees on the timeline that the caller asked in the queue.
    event, request = rows[0].payload, rows[1].payload
    assert (event["type"], event["customer"]["phone"]) == ("callback_requested", FINNISH)
    assert event["data"]["queue"] == "billing"
    assert (request["phone"], request["queue"], request["language"]) == (FINNISH, "billing", "fi")
    query = {k: v[0] for k, v in parse_qs(urlsplit(action).query).items()}
    assert request["queued_at"] == request["first_contact_at"]
    assert datetime.fromisoformat(request["queued_at"]) == datetime.fromisoformat(
        query["queued_at"]
    )
    assert datetime.fromisoformat(request["estimated_callback_at"]) == datetime.fromisoformat(
        query["estimate"]
    )

    # Twilio retries the press, the caller hangs up, the queue reports `hangup` and `leave`.
    again = twiml(await twilio_post(intake_with_callback, action, pressed))
    assert [child.tag for child in again] == ["Say", "Leave"]
    for result in ("hangup", "leave"):
        done = await twilio_post(
            intake_with_callback,
            "/v1/webhooks/twilio",
            {
                "CallSid": CALL_SID,
                "From": FINNISH,
                "To": "+358923123456",
                "Direction": "inbound",
                "QueueResult": result,
                "QueueTime": "50",
            },
        )
        assert done.status_code == 200, done.text

    rows = await outbox_rows()
    assert [row.path for row in rows if row.destination == "callback"] == ["/v1/callbacks"]
    # Nothing on the timeline says "missed call": the hang-up is the request's duplicate.
    assert [row.payload["type"] for row in rows if row.destination == "history"] == [
        "callback_requested"
    ]
    inbound: list[Inbound] = await inbound_rows()
    hang_up = [row for row in inbound if (row.summary or {}).get("queue_result") == "hangup"]
    assert [row.status for row in hang_up] == ["duplicate"]


@pytest.mark.parametrize("result", ["hangup", "system-error"])
async def test_a_hang_up_without_pressing_is_still_a_missed_call(
    intake_with_callback: AsyncClient, outbox_rows: Rows, result: str
) -> None:
    done = await twilio_post(
        intake_with_callback,
        "/v1/webhooks/twilio",
        {
            "CallSid": CALL_SID,
            "From": FINNISH,
            "To": "+358923123456",
            "Direction": "inbound",
            "QueueResult": result,
        },
    )
    assert done.status_code == 200
    rows: list[IntakeOutbox] = await outbox_rows()
    assert [row.path for row in rows if row.destination == "callback"] == ["/v1/callbacks"]
    assert "queued_at" not in rows[-1].payload or rows[-1].payload["queued_at"] is None


async def test_another_digit_repeats_the_offer_once_then_leaves_the_caller_waiting(
    intake_with_callback: AsyncClient, billing: LiveServer, outbox_rows: Rows
) -> None:
    action = await _offered_action(intake_with_callback)

    repeated = twiml(await twilio_post(intake_with_callback, action, waiting(Digits="2")))
    gather = repeated.find("Gather")
    assert gather is not None, ET.tostring(repeated)
    second = gather.get("action", "")
    assert "tries=1" in second

    after = twiml(await twilio_post(intake_with_callback, second, waiting(Digits="9")))
    assert is_hold_music(after)
    assert await outbox_rows() == []
