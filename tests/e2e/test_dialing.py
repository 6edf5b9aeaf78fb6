"""Dialing through the phone system (§10), every service a real process; the test plays
Twilio: it answers the Calls API, fetches nothing it was not given, presses 1 at the whisper
and posts the status and `<Dial action>` callbacks, signed as Twilio signs them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.support.dialing import (
    AGENT_PHONE,
    CUSTOMER,
    QUEUE_NUMBER,
    gather_of,
    press_one,
    ready_agent,
    wait_until,
)
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.stack import Stack, delivering_to, running_stack
from tests.support.twilio_calls import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TwilioCalls,
    call_params,
    play,
    twilio_calls_api,
)

pytestmark = pytest.mark.e2e

NAMES = ("history", "callback", "intake", "worker", "relay")

StackFactory = Callable[..., Stack]


@pytest.fixture
def twilio() -> Iterator[TwilioCalls]:
    with twilio_calls_api() as api:
        yield api


@pytest.fixture
def start_stack(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
    twilio: TwilioCalls,
) -> Iterator[StackFactory]:
    stacks: list[Any] = []

    def start(**overrides: str) -> Stack:
        extra = {
            **delivering_to(gateway, inbox, tmp_path / "sink"),
            "RINGBACK_DIALER": "twilio",
            "RINGBACK_DIALER_TWILIO_BASE_URL": twilio.url,
            "RINGBACK_DIALER_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "RINGBACK_DIALER_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "RINGBACK_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            **overrides,
        }
        context = running_stack(base_env, tmp_path / "logs", extra, NAMES)
        stacks.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stacks):
        context.__exit__(None, None, None)


@pytest.fixture
async def opened() -> AsyncIterator[list[httpx.AsyncClient]]:
    """The agents' clients, closed after the test."""
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


async def test_the_call_button_rings_agent_then_customer_and_the_line_proposes_the_outcome(
    start_stack: StackFactory,
    twilio: TwilioCalls,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
) -> None:
    stack = start_stack()
    agent = await ready_agent(stack, make_key, opened)

    started = await agent.dial()
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "initiated"
    again = await agent.dial()
    assert again.status_code == 409
    assert again.json()["reason"] == "dial-running"

    [call] = await asyncio.to_thread(twilio.wait_for, 1)
    # The agent's phone first, showing the queue's number; ringing for at most 20 s.
    assert call.one("To") == AGENT_PHONE
    assert call.one("From") == QUEUE_NUMBER
    assert int(call.one("Timeout")) <= 20
    gather = gather_of(call.twiml())
    assert gather.get("numDigits") == "1"
    say = gather.find("Say")
    assert say is not None
    assert "1" in (say.text or "")
    status_url = call.one("StatusCallback")
    assert set(call.form["StatusCallbackEvent"]) >= {"ringing", "answered", "completed"}

    async with httpx.AsyncClient() as twilio_side:
        assert (await play(twilio_side, status_url, call_params(call.sid, "ringing"))).is_success
        await agent.dial_status("ringing_agent")
        await play(twilio_side, status_url, call_params(call.sid, "in-progress"))
        bridge = await press_one(twilio_side, call.sid, gather.get("action", ""))
        dial = bridge.find("Dial")
        assert dial is not None
        # The customer sees the queue's number, never the agent's.
        assert dial.get("callerId") == QUEUE_NUMBER
        number = dial.find("Number")
        assert number is not None
        assert number.text == CUSTOMER
        # Answering-machine detection is off unless the queue switches it on.
        assert number.get("machineDetection") is None
        await agent.dial_status("ringing_customer")

        customer_status = number.get("statusCallback", "")
        child = call_params("CA" + "c" * 32, "in-progress", ParentCallSid=call.sid)
        await play(twilio_side, customer_status, child)
        await agent.dial_status("connected")
        result = call_params(
            call.sid, "in-progress", DialCallStatus="completed", DialCallDuration="42"
        )
        result["DialCallSid"] = "CA" + "c" * 32
        # Twilio delivers the result twice, and the agent leg's end overtakes it.
        for _ in range(2):
            hang_up = await play(twilio_side, dial.get("action", ""), result)
            assert hang_up.status_code == 200
            assert ET.fromstring(hang_up.content).find("Hangup") is not None
        await play(twilio_side, status_url, call_params(call.sid, "completed", CallDuration="50"))

    ended = await agent.dial_status("ended")
    assert ended["line_result"] == "answered"
    assert ended["duration_seconds"] == 42

    async def proposed() -> dict[str, Any] | None:
        body = await agent.callback()
        return body if body["attempts"] else None

    callback = await wait_until(proposed)
    await asyncio.sleep(1.0)  # let any duplicate land
    callback = await agent.callback()
    [attempt] = callback["attempts"]
    assert (attempt["outcome"], attempt["final"], attempt["dial_id"]) == (
        "reached",
        False,
        ended["id"],
    )
    # A proposal takes no effect: the agent still holds the callback while wrapping up.
    assert (callback["status"], callback["agent_id"]) == ("in_progress", "anna")

    # The line said a person answered; it was somebody else's phone. The agent corrects it.
    corrected = await agent.api.patch(
        f"/v1/callbacks/{agent.callback_id}/attempts/{attempt['id']}",
        json={"agent_id": "anna", "final": True, "outcome": "wrong_number", "note": "not them"},
    )
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    assert body["attempt"]["final"] is True
    assert (body["attempt"]["outcome"], body["attempt"]["proposed_outcome"]) == (
        "wrong_number",
        "reached",
    )
    assert (body["callback"]["status"], body["callback"]["outcome"]) == ("failed", "wrong_number")
    twice = await agent.api.patch(
        f"/v1/callbacks/{agent.callback_id}/attempts/{attempt['id']}",
        json={"agent_id": "anna", "final": True},
    )
    assert twice.status_code == 409
    assert len(twilio.calls) == 1


async def test_an_unconfirmed_no_answer_becomes_final_by_itself_and_the_customer_hears(
    start_stack: StackFactory,
    twilio: TwilioCalls,
    gateway: SmsGateway,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
) -> None:
    stack = start_stack(RINGBACK_WRAP_UP_SECONDS="1")
    agent = await ready_agent(stack, make_key, opened)
    await asyncio.to_thread(gateway.wait_for, 1)  # the confirmation
    assert (await agent.dial()).status_code == 202
    [call] = await asyncio.to_thread(twilio.wait_for, 1)
    async with httpx.AsyncClient() as twilio_side:
        bridge = await press_one(twilio_side, call.sid, gather_of(call.twiml()).get("action", ""))
        dial = bridge.find("Dial")
        assert dial is not None
        await play(
            twilio_side,
            dial.get("action", ""),
            call_params(call.sid, "in-progress", DialCallStatus="no-answer", DialCallDuration="0"),
        )

    async def retried() -> dict[str, Any] | None:
        body = await agent.callback()
        return body if body["status"] == "pending" else None

    callback = await wait_until(retried)
    [attempt] = callback["attempts"]
    assert (attempt["outcome"], attempt["final"]) == ("no_answer", True)
    assert callback["agent_id"] is None
    # Only once final does the "we tried to reach you" SMS go.
    sent = await asyncio.to_thread(gateway.wait_for, 2)
    assert sent[1].json()["to"] == CUSTOMER


async def test_no_attempt_when_the_agent_does_not_press_one_or_the_number_cannot_be_routed(
    start_stack: StackFactory,
    twilio: TwilioCalls,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
) -> None:
    stack = start_stack()
    agent = await ready_agent(stack, make_key, opened)
    async with httpx.AsyncClient() as twilio_side:
        # The agent's own voicemail picks up: nobody presses 1, the leg ends.
        assert (await agent.dial()).status_code == 202
        [first] = await asyncio.to_thread(twilio.wait_for, 1)
        status_url = first.one("StatusCallback")
        await play(twilio_side, status_url, call_params(first.sid, "in-progress"))
        await play(twilio_side, status_url, call_params(first.sid, "completed"))
        ended = await agent.dial_status("ended")
        assert ended["line_result"] == "agent_not_connected"

        # Twice the customer's number cannot be routed: no attempt, and the number is flagged.
        for count in (2, 3):
            assert (await agent.dial()).status_code == 202
            call = (await asyncio.to_thread(twilio.wait_for, count))[-1]
            bridge = await press_one(
                twilio_side, call.sid, gather_of(call.twiml()).get("action", "")
            )
            dial = bridge.find("Dial")
            assert dial is not None
            await play(
                twilio_side,
                dial.get("action", ""),
                call_params(call.sid, "in-progress", DialCallStatus="failed"),
            )

            async def ended_failed(count: int = count) -> bool:
                dials = (await agent.callback())["dials"]
                return len(dials) == count and dials[0]["line_result"] == "failed"

            await wait_until(ended_failed)

    callback = await agent.callback()
    assert callback["attempts"] == []
    assert (callback["status"], callback["agent_id"]) == ("in_progress", "anna")
    assert callback["flag"] == "check_number"


async def test_a_worker_killed_mid_request_never_places_a_second_call(
    start_stack: StackFactory,
    twilio: TwilioCalls,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
) -> None:
    stack = start_stack(RINGBACK_JOB_TIMEOUT_SECONDS="2")
    agent = await ready_agent(stack, make_key, opened)
    twilio.answering.clear()  # Twilio takes the request and is slow to answer
    assert (await agent.dial()).status_code == 202
    await asyncio.to_thread(twilio.wait_arrived, 1)
    stack.stop("worker", signal.SIGKILL)
    twilio.answering.set()  # the call exists at Twilio; its answer reaches nobody
    stack.start("worker")

    # Whichever comes first, arq's rerun of the job or the sweep: neither asks again.
    unknown = await agent.dial_status("unknown", seconds=60)
    assert "lost" in unknown["error"]
    await asyncio.sleep(3.0)  # arq's rerun window has passed: still one request
    assert twilio.arrived == 1
    # The agent sees it and may dial again: a new dial, a second (deliberate) request.
    again = await agent.dial()
    assert again.status_code == 202, again.text
    await asyncio.to_thread(twilio.wait_arrived, 2)


async def test_with_detection_on_a_machine_answering_proposes_voicemail(
    start_stack: StackFactory,
    twilio: TwilioCalls,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
) -> None:
    stack = start_stack()
    agent = await ready_agent(stack, make_key, opened, dialing={"machine_detection": True})
    assert (await agent.dial()).status_code == 202
    [call] = await asyncio.to_thread(twilio.wait_for, 1)
    async with httpx.AsyncClient() as twilio_side:
        bridge = await press_one(twilio_side, call.sid, gather_of(call.twiml()).get("action", ""))
        dial = bridge.find("Dial")
        assert dial is not None
        number = dial.find("Number")
        assert number is not None
        assert number.get("machineDetection") == "Enable"
        amd_url = number.get("amdStatusCallback", "")
        child = "CA" + "e" * 32
        # Twilio's verdict arrives on its own callback, then the call ends as `completed`.
        verdict = call_params(child, "in-progress", AnsweredBy="machine_end_beep")
        assert (await play(twilio_side, amd_url, verdict)).is_success
        await agent.dial_status("connected")
        await play(
            twilio_side,
            dial.get("action", ""),
            call_params(call.sid, "in-progress", DialCallStatus="completed", DialCallSid=child),
        )
    ended = await agent.dial_status("ended")
    assert ended["line_result"] == "machine"

    async def proposed() -> list[dict[str, Any]]:
        attempts: list[dict[str, Any]] = (await agent.callback())["attempts"]
        return attempts

    [attempt] = await wait_until(proposed)
    assert (attempt["outcome"], attempt["final"]) == ("voicemail", False)
