"""No personal data in Redis or in any process's log, after a whole flow with every process real.

A missed call from a known customer (email and name from the CRM lookup), the customer's
self-service link opened through intake (and a tampered one tried), a contact request,
a claim with a `no_answer` attempt (the retry SMS) and an erasure; then every key and value of
the run's Redis database and every log line of every process is searched for the person.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = pytest.mark.e2e

SECRET = new_secret()
EMAIL = "maija.privacy@example.fi"
NAME = "Maija Meikäläinen"
# The number in the notations a caller, a CRM or our own code might write it in.
PHONES = ["040 765 4329", "0407654329", "+358407654329", "358407654329", "+358 40 765 4329"]
NEEDLES = [*PHONES, EMAIL, NAME, "Meikäläinen", "Meik\\u00e4l\\u00e4inen", "maija.privacy"]
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def stack(
    base_env: dict[str, str], clean_db: None, gateway: SmsGateway, inbox: SmtpInbox, tmp_path: Path
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        **delivering_to(gateway, inbox, tmp_path / "sink"),
        # DEBUG: the most a process ever says about what it handles.
        "RINGBACK_LOG_LEVEL": "DEBUG",
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def redis_dump(url: str) -> dict[str, list[bytes]]:
    """Every key of the database with every value it holds, whatever the type."""
    client = aioredis.Redis.from_url(url)
    dump: dict[str, list[bytes]] = {}
    try:
        async for key in client.scan_iter(count=500):
            kind = (await client.type(key)).decode()
            values: list[bytes] = []
            if kind == "string":
                values = [await client.get(key) or b""]
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    values += [field, value]
            elif kind == "list":
                values = list(await client.lrange(key, 0, -1))
            elif kind == "set":
                values = list(await client.smembers(key))
            elif kind == "zset":
                values = [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                for _, fields in await client.xrange(key):
                    for field, value in fields.items():
                        values += [field, value]
            else:
                raise AssertionError(f"unexpected Redis type {kind} for {key!r}")
            dump[key.decode()] = values
    finally:
        await client.aclose()
    return dump


async def sample_jobs(url: str, seen: dict[str, bytes], stop: asyncio.Event) -> None:
    """Copy every `arq:job:*` payload while it exists: finished jobs are deleted at once."""
    client = aioredis.Redis.from_url(url)
    try:
        while not stop.is_set():
            async for key in client.scan_iter(match="arq:job:*", count=500):
                if key.decode() not in seen and (value := await client.get(key)) is not None:
                    seen[key.decode()] = value
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()


def found_in(text: str) -> list[str]:
    folded = text.lower()
    return [needle for needle in NEEDLES if needle.lower() in folded]


@pytest.mark.timeout(90)
async def test_no_personal_data_in_redis_or_logs_after_a_whole_flow(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    make_key: Callable[..., Awaitable[str]],
    redis_url: str,
    tmp_path: Path,
) -> None:
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    known = {"email": EMAIL, "name": NAME, "language": "fi"}
    event = call_event(call_id="privacy-1", metadata={"customer": known}, **{"from": PHONES[0]})
    body = body_of(event)
    tokens: list[str] = []  # the self-service tokens this flow sees: secrets, never logged
    jobs: dict[str, bytes] = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_jobs(redis_url, jobs, stop))
    async with httpx.AsyncClient(timeout=10) as http:
        missed = await http.post(
            f"{stack.url('intake')}/v1/webhooks/generic",
            content=body,
            headers=signed_headers(SECRET, body),
        )
        assert missed.status_code == 202, missed.text
        (sms,) = await asyncio.to_thread(gateway.wait_for, 1)
        await asyncio.to_thread(inbox.wait_for, 1)

        # The customer opens the link from the SMS through intake's forwarder, as a page and
        # as JSON, and a stranger tries a token that is one character off.
        link = re.search(r"/v1/self/([A-Za-z0-9._~-]+)", sms.json()["text"])
        assert link is not None, sms.json()["text"]
        token = link.group(1)
        tokens.append(token)
        for accept in ("text/html", "application/json"):
            page = await http.get(
                f"{stack.url('intake')}/v1/self/{token}", headers={"accept": accept}
            )
            assert page.status_code == 200, page.text
        # One character changed in the middle (a token's last base64 character may carry
        # only padding bits, so changing it can leave the bytes as they were).
        middle = next(i for i in range(len(token) // 2, len(token)) if token[i].isalnum())
        tampered = token[:middle] + ("x" if token[middle] != "x" else "y") + token[middle + 1 :]
        tokens.append(tampered)
        refused = await http.get(f"{stack.url('intake')}/v1/self/{tampered}")
        assert refused.status_code == 404

        contact = await http.post(
            f"{stack.url('intake')}/v1/contact-requests",
            json={
                "channel": "web",
                "name": NAME,
                "phone": PHONES[2],
                "email": EMAIL,
                "message": f"Soittakaa numeroon {PHONES[1]}, {NAME}",
            },
            headers=admin,
        )
        assert contact.status_code in {200, 202}, contact.text

        callbacks = f"{stack.url('callback')}"

        async def claimed() -> dict[str, Any] | None:
            answer = await http.post(
                f"{callbacks}/v1/queue/claim", json={"agent_id": "agent-7"}, headers=admin
            )
            return dict(answer.json()) if answer.status_code == 200 else None

        callback = await eventually(claimed)
        attempt = await http.post(
            f"{callbacks}/v1/callbacks/{callback['id']}/attempts",
            json={"agent_id": "agent-7", "outcome": "no_answer", "note": f"{NAME} ei vastannut"},
            headers=admin,
        )
        assert attempt.status_code == 201, attempt.text
        sms_before = len(gateway.requests)
        await asyncio.to_thread(gateway.wait_for, sms_before + 1)  # the retry SMS

        history = stack.url("history")

        async def customer_id() -> str | None:
            found = await http.get(
                f"{history}/v1/customers", params={"phone": PHONES[1]}, headers=admin
            )
            items = found.json()["items"] if found.status_code == 200 else []
            return str(items[0]["id"]) if items else None

        customer = await eventually(customer_id)
        erased = await http.delete(f"{history}/v1/customers/{customer}", headers=admin)
        assert erased.status_code == 200, erased.text

        async def erased_everywhere() -> bool:
            left = await http.get(f"{callbacks}/v1/callbacks/{callback['id']}", headers=admin)
            return left.status_code == 404 or left.json().get("phone") != PHONES[2]

        await eventually(erased_everywhere)
    await asyncio.sleep(1.0)  # let the last jobs and log lines land
    stop.set()
    await sampler

    dump = await redis_dump(redis_url)
    assert dump, "the run's Redis database is empty: the scan would prove nothing"
    leaks = {
        key: needles
        for key, values in dump.items()
        if (needles := found_in(key + "\n".join(v.decode(errors="replace") for v in values)))
    }
    assert leaks == {}, f"personal data in Redis: {leaks}"

    functions = set()
    for key, value in jobs.items():
        assert found_in(value.decode(errors="replace")) == [], key
        job = json.loads(value)
        functions.add(job["f"])
        assert set(job) <= {"t", "f", "a", "k", "et"}, (key, sorted(job))
        assert all(isinstance(arg, str) and len(arg) <= 64 for arg in job["a"]), (key, job["a"])
        assert all(_UUID.match(arg) or arg.isidentifier() for arg in job["a"]), (key, job["a"])
        assert all(isinstance(v, str | int | bool | None) for v in job["k"].values()), key
    # The sends themselves were seen, not only the periodic sweeps.
    assert len(functions) >= 2, functions

    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert {p.stem for p in logs} == {"history", "callback", "intake", "worker", "relay"}
    for log in logs:
        text = log.read_text(errors="replace")
        assert text.strip(), f"{log.name} is empty: the scan would prove nothing"
        hits: list[tuple[int, str]] = [
            (n, line[:300]) for n, line in enumerate(text.splitlines()) if found_in(line)
        ]
        assert hits == [], f"personal data in {log.name}: {hits[:5]}"
        assert len(tokens) == 2
        leaked = [n for n, line in enumerate(text.splitlines()) if any(t in line for t in tokens)]
        assert leaked == [], f"a self-service token in {log.name}, lines {leaked[:5]}"
