"""The phone system is down when an agent presses Call (§10): they are told, keep the claim,
and nothing is recorded as an attempt. Every service a real process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.dialing import ready_agent
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.infra import free_port
from tests.support.stack import Stack, delivering_to, running_stack
from tests.support.twilio_calls import ACCOUNT_SID, AUTH_TOKEN


@pytest.fixture
def stack(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Stack]:
    extra = {
        **delivering_to(gateway, inbox, tmp_path / "sink"),
        "RINGBACK_DIALER": "twilio",
        # Nothing listens here: Twilio's API cannot be reached.
        "RINGBACK_DIALER_TWILIO_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "RINGBACK_DIALER_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "RINGBACK_DIALER_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "RINGBACK_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


@pytest.fixture
async def opened() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


async def test_the_agent_is_told_keeps_the_claim_and_no_attempt_is_recorded(
    stack: Stack,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
) -> None:
    agent = await ready_agent(stack, make_key, opened)
    started = await agent.dial()
    assert started.status_code == 202, started.text

    failed = await agent.dial_status("failed")
    assert "could not be reached" in failed["error"]
    callback = await agent.callback()
    assert callback["attempts"] == []
    assert (callback["status"], callback["agent_id"]) == ("in_progress", "anna")
    # The agent may try again (or dial by hand): nothing is left running.
    assert (await agent.dial()).status_code == 202
