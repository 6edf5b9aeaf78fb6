"""SMS pumping and email bombing through us: every way a stranger could make us send has a ceiling.

The review's attack: a contact request pairs a victim's number with the attacker's own email;
the confirmation email hands the attacker the self-service link, and every rebook through it
sent the victim a "rebooked" SMS (12 rebooks: 13 SMS; 20 more in 0.76 s). Every process runs
for real here, the SMS going to a real HTTP gateway and the email to a real SMTP server.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callback.helpers import plan_body
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = pytest.mark.e2e

VICTIM = "+358401110051"
SECOND_VICTIM = "+358401110052"
ATTACKER = "attacker@evil.example"
BOMBED = "victim@example.fi"
SMS_CEILING = 4
EMAIL_CEILING = 5


@pytest.fixture
def stack(
    base_env: dict[str, str], clean_db: None, gateway: SmsGateway, inbox: SmtpInbox, tmp_path: Path
) -> Iterator[Stack]:
    extra = {
        **delivering_to(gateway, inbox, tmp_path / "s"),
        "RINGBACK_SMS_PER_NUMBER_PER_DAY": str(SMS_CEILING),
        "RINGBACK_EMAIL_PER_ADDRESS_PER_DAY": str(EMAIL_CEILING),
        # Intake's own per-IP limit would stop the attack earlier than the ceilings under test.
        "RINGBACK_RATE_LIMIT_PER_IP": "1000",
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def _eventually(check: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


def _sms_to(gateway: SmsGateway, number: str) -> list[str]:
    return [str(r.json()["text"]) for r in gateway.requests if r.json()["to"] == number]


def _to(inbox: SmtpInbox, address: str) -> list[EmailMessage]:
    return [m for m in inbox.messages if address in str(m["To"])]


def _token(message: EmailMessage) -> str:
    found = re.search(r"/v1/self/([A-Za-z0-9._~-]+)", message.get_content())
    assert found is not None, message.get_content()
    return found.group(1)


async def _refusals(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT reason, count(*) FROM callback.refusals GROUP BY reason")
        )
        return {reason: int(count) for reason, count in rows}


async def _settled(gateway: SmsGateway, inbox: SmtpInbox) -> None:
    """Wait until nothing more arrives for a while: the worker has sent what it was given."""
    seen = (-1, -1)
    while seen != (len(gateway.requests), len(inbox.messages)):
        seen = (len(gateway.requests), len(inbox.messages))
        await asyncio.sleep(2.0)


def _slot(days: int, minutes: int) -> str:
    start = (datetime.now(UTC) + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return (start + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.timeout(120)
async def test_rebooking_through_the_link_cannot_pump_sms_to_the_number(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    engine: AsyncEngine,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    intake = stack.url("intake")
    async with httpx.AsyncClient(timeout=10) as http:
        plan = await http.put(
            f"{stack.url('callback')}/v1/capacity", json=plan_body(), headers=admin
        )
        assert plan.status_code == 200, plan.text
        contact = await http.post(
            f"{intake}/v1/contact-requests",
            json={"channel": "web", "phone": VICTIM, "email": ATTACKER, "message": "soittakaa"},
            headers=admin,
        )
        assert contact.status_code == 202, contact.text
        [email] = await asyncio.to_thread(inbox.wait_for, 1)
        token = _token(email)
        link = f"{intake}/v1/self/{token}"
        view = (await http.get(link, headers={"accept": "application/json"})).json()
        assert view["rebooks_left_today"] == 3

        answers = []
        for n in range(20):
            rebook = {"action": "rebook", "slot_id": _slot(2, 15 * (n % 2))}
            answers.append(await http.post(link, json=rebook))
        assert [a.status_code for a in answers] == [200] * 3 + [429] * 17
        refused = answers[-1]
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "call us" in refused.json()["detail"]

        # The customer is not locked out: the page says to call, and cancelling still works.
        page = await http.get(link, headers={"accept": "text/html"})
        assert "soita meille" in page.text
        cancelled = await http.post(link, json={"action": "cancel"})
        assert cancelled.status_code == 200, cancelled.text
        await _settled(gateway, inbox)

    # The confirmation and the first "rebooked" notice; the rest fell in the cooldown.
    texts = _sms_to(gateway, VICTIM)
    assert len(texts) == 2, texts
    refusals = await _refusals(engine)
    assert refusals["rebooks_per_callback"] == 17
    assert refusals["notice_sms_cooldown"] == 3  # two more rebooks and the cancel
    async with httpx.AsyncClient(timeout=10) as http:
        scraped = (await http.get(f"{stack.url('callback')}/metrics")).text
    assert 'ringback_refusals_total{channel="none",reason="rebooks_per_callback"} 17.0' in scraped
    assert 'ringback_ceiling{name="sms_per_number_per_day"} 4.0' in scraped


@pytest.mark.timeout(120)
async def test_a_number_gets_at_most_its_daily_sms_whatever_the_kind(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    engine: AsyncEngine,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    """New callbacks cancelled at once: each sends a confirmation and a cancelled notice."""
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    intake = stack.url("intake")
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(4):
            address = f"attacker{n}@evil.example"
            contact = await http.post(
                f"{intake}/v1/contact-requests",
                json={"channel": "web", "phone": SECOND_VICTIM, "email": address},
                headers=admin,
            )
            assert contact.status_code == 202, contact.text

            async def confirmation(address: str = address) -> EmailMessage | None:
                return next(iter(_to(inbox, address)), None)

            token = _token(await _eventually(confirmation))
            cancelled = await http.post(f"{intake}/v1/self/{token}", json={"action": "cancel"})
            assert cancelled.status_code == 200, cancelled.text
        await _settled(gateway, inbox)

    assert len(_sms_to(gateway, SECOND_VICTIM)) == SMS_CEILING  # 8 owed
    assert (await _refusals(engine))["sms_per_number"] == 8 - SMS_CEILING


@pytest.mark.timeout(120)
async def test_an_address_gets_at_most_its_daily_email(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    engine: AsyncEngine,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    """Email-only contact requests, each acknowledged by email: bombing one address."""
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(EMAIL_CEILING + 3):
            contact = await http.post(
                f"{stack.url('intake')}/v1/contact-requests",
                json={"channel": "email", "email": BOMBED, "message": f"viesti {n}"},
                headers=admin,
            )
            assert contact.status_code in (200, 202), contact.text
        await _eventually(lambda: _async(len(_to(inbox, BOMBED)) >= EMAIL_CEILING))
        await _settled(gateway, inbox)

    assert len(_to(inbox, BOMBED)) == EMAIL_CEILING
    assert (await _refusals(engine))["email_per_address"] == 3


async def _async(value: bool) -> bool:
    return value


@pytest.mark.timeout(120)
async def test_an_agent_key_cannot_create_callbacks_or_acknowledgements_without_limit(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
    internal_key: str,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    extra = {
        **delivering_to(gateway, inbox, tmp_path / "s"),
        "RINGBACK_SENDS_PER_API_KEY_PER_HOUR": "3",
    }
    with running_stack(base_env, tmp_path / "logs", extra, ("history", "callback")) as stack:
        agent = {"authorization": f"Bearer {await make_key('callbacks:write')}"}
        internal = {"authorization": f"Bearer {internal_key}"}
        url = stack.url("callback")

        def body(n: int) -> dict[str, Any]:
            return {
                "request_id": f"req-{n}",
                "phone": f"+35840111{n:04d}",
                "source": "contact_request",
                "channel": "web",
                "first_contact_at": datetime.now(UTC).isoformat(),
            }

        async with httpx.AsyncClient(timeout=10) as http:
            made = [
                await http.post(f"{url}/v1/callbacks", json=body(n), headers=agent)
                for n in range(3)
            ]
            ack = await http.post(
                f"{url}/v1/acknowledgements",
                json={
                    "request_id": "ack-1",
                    "email": "a@example.fi",
                    "received_at": datetime.now(UTC).isoformat(),
                },
                headers=agent,
            )
            # The relay's key forwards every customer's contact and is never held back.
            relayed = [
                await http.post(f"{url}/v1/callbacks", json=body(n), headers=internal)
                for n in range(10, 16)
            ]
    assert [m.status_code for m in made] == [201, 201, 201]
    assert ack.status_code == 429
    assert ack.headers["content-type"].startswith("application/problem+json")
    assert int(ack.headers["retry-after"]) > 0
    assert [r.status_code for r in relayed] == [201] * 6
