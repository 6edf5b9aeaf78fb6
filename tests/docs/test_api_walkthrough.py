"""docs/api.md's day with curl, step by step over HTTP against every process started for real.

The test makes the requests the walk-through's curl commands make, in the same order, and
sends the bodies the document writes out (the queues, the agents, the claims and attempts):
a step added to one and not the other, or a body that does not work, fails here. It walks
the day twice after two `ringback demo`s, as a reader who tries it again would (issue #23).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback
from shared.jsonutil import dumps
from shared.standard_webhooks import sign
from tests.support.infra import ROOT
from tests.support.signing import new_secret
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "api.md"
SECRET = new_secret()
MAIJA = "+358401234567"
MAIJA_EMAIL = "maija@example.fi"
SVEN = "+46701234567"
DESK_SCOPES = ("--scope", "callbacks:read", "--scope", "callbacks:write", "--scope", "history:read")


def walkthrough() -> str:
    text = DOC.read_text()
    return text[text.index("## A day, with curl") : text.index("## Operators")]


@dataclass(frozen=True)
class Command:
    """One curl of the walk-through: `METHOD $SERVICE/path`, and the JSON body it writes out."""

    request: str
    body: str | None


def doc_commands() -> list[Command]:
    """Every curl in the walk-through's shell blocks, in order."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", walkthrough(), re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for number, line in enumerate(lines):
            if "curl " not in line:
                continue
            url = re.search(r'"(\$(?:INTAKE|CALLBACK|HISTORY)/[^"]*)"', line)
            assert url, f"a curl in docs/api.md without a quoted $SERVICE URL: {line}"
            # An error answer must stop the reader, not scroll past (issue #23).
            assert "--fail-with-body" in line, f"a curl in docs/api.md that hides errors: {line}"
            method = re.search(r" -X ([A-Z]+)", line)
            inline = re.search(r" -d '([^']*)'", line)
            body = inline.group(1) if inline else None
            if "<<'EOF'" in line:
                end = lines.index("EOF", number)
                body = "\n".join(lines[number + 1 : end])
            commands.append(Command(f"{method.group(1) if method else 'GET'} {url.group(1)}", body))
    return commands


class Walk:
    """The document's requests, one after another, with the shell variables filled in."""

    def __init__(self, client: httpx.AsyncClient, variables: dict[str, str]) -> None:
        self.client = client
        self.variables = variables
        self.commands = doc_commands()
        self.made = 0

    async def __call__(self, request: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        assert self.made < len(self.commands), f"the document ends before {request}"
        command = self.commands[self.made]
        self.made += 1
        assert command.request == request, f"curl {self.made}: the document has {command.request}"
        if command.body is not None:
            kwargs["json"] = json.loads(command.body)
        method, template = request.split(" ", 1)
        url = re.sub(r"\$([A-Z_]+)", lambda m: self.variables[m.group(1)], template)
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return await self.client.request(method, url, headers=headers, **kwargs)

    def finished(self) -> None:
        left = [command.request for command in self.commands[self.made :]]
        assert not left, f"the document goes on: {left}"


@pytest.fixture
def stack(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    # No RINGBACK_RETRY_DELAYS_MINUTES: the walk-through's queue gives the one-minute retry.
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        "RINGBACK_SINK_DIR": str(tmp_path / "outbox"),
        "RINGBACK_DATA_DIR": str(tmp_path / "data"),
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def cli(stack: Stack, *args: str, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args,
        cwd=ROOT, env={**stack.env, **(env or {})}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def create_key(stack: Stack, *args: str) -> str:
    """`ringback api-key create ... | tail -n 1`, as step 1 does."""
    return (await cli(stack, "api-key", "create", *args)).splitlines()[-1]


async def eventually(check: Callable[[], Any], seconds: float = 15.0) -> Any:
    """What `check` returns (awaited if need be) once it is truthy, within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("not in time")


async def make_due(sessions: async_sessionmaker[AsyncSession], callback_id: str) -> None:
    """Stands in for the wait in the walk-through's claim loop: the callback is due now."""
    async with sessions() as session:
        await session.execute(
            update(Callback)
            .where(Callback.id == callback_id)
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()


def sent_to(outbox: Path, phone: str) -> list[Path]:
    """The development sink's SMS to `phone`."""
    folder = outbox / "sms"
    found = sorted(folder.glob("*.txt")) if folder.exists() else []
    return [path for path in found if f"To: {phone}\n" in path.read_text()]


def emails(outbox: Path, to: str) -> int:
    """Emails in the sink addressed to `to`: the demo that ran before may still be sending its
    own (to other people) while the walkthrough counts."""
    folder = outbox / "email"
    if not folder.exists():
        return 0
    return sum(f"To: {to}" in path.read_text(errors="replace") for path in folder.glob("*.eml"))


def signed(prefix: str, sender: str, dialed: str, customer: dict[str, str]) -> dict[str, Any]:
    """The missed call steps 4 and 10 build and sign in the shell."""
    stamp = int(time.time())
    # The reader's ids are unique per second; two walks in one second must not collide.
    unique = f"{stamp}_{secrets.token_hex(2)}"
    msg_id = f"msg_{prefix}_{unique}"
    body = dumps(
        {
            "id": f"evt_{prefix}_{unique}",
            "call_id": f"call-{prefix}-{unique}",
            "from": sender,
            "to": dialed,
            "status": "no_answer",
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "metadata": {"customer": customer},
        }
    )
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, msg_id, stamp, body),
    }
    return {"content": body, "headers": headers}


async def walk_the_day(
    stack: Stack,
    client: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Path,
) -> None:
    step = Walk(client, {s.upper(): stack.url(s) for s in ("intake", "callback", "history")})
    texts_before, emails_before = len(sent_to(outbox, MAIJA)), emails(outbox, MAIJA_EMAIL)

    # 1. API keys, one bound to each agent
    admin = await create_key(stack, "--scope", "admin", "--name", "walkthrough-admin")
    anna = await create_key(stack, "--agent", "anna", *DESK_SCOPES, "--name", "anna-desk")
    bjorn = await create_key(stack, "--agent", "bjorn", *DESK_SCOPES, "--name", "bjorn-desk")
    me = await step("GET $CALLBACK/v1/me", anna)
    assert me.json()["agent_id"] == "anna", me.text

    # 2. Two queues: created the first time, replaced as they were after that.
    billing = await step("PUT $CALLBACK/v1/queues/walk-billing", admin)
    assert billing.status_code in (200, 201), billing.text
    assert billing.json()["numbers"] == ["+358923123456"]
    assert billing.json()["capacity"]["timezone"] == "Europe/Helsinki"
    support = await step("PUT $CALLBACK/v1/queues/walk-support", admin)
    assert support.status_code in (200, 201), support.text
    assert support.json()["effective_timezone"] == "Europe/Stockholm"

    # 3. Two agents, available.
    for agent in ("anna", "bjorn"):
        put = await step(f"PUT $CALLBACK/v1/agents/{agent}", admin)
        assert put.status_code in (200, 201), put.text
    for agent, key in (("anna", anna), ("bjorn", bjorn)):
        presence = await step(f"PUT $CALLBACK/v1/agents/{agent}/presence", key)
        assert presence.json()["presence"] == "available", presence.text

    # 4. Maija's signed missed call, to billing's number; it names no queue.
    maija = {"email": MAIJA_EMAIL, "name": "Maija", "language": "fi"}
    call = signed("fi", "040 123 4567", "+358 9 2312 3456", maija)
    answer = await step("POST $INTAKE/v1/webhooks/generic", **call)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"

    # 5. The confirmation: an SMS and an email in the development sink, a callback in billing.
    await eventually(lambda: len(sent_to(outbox, MAIJA)) == texts_before + 1)
    assert "/v1/self/" in sent_to(outbox, MAIJA)[-1].read_text()
    await eventually(lambda: emails(outbox, MAIJA_EMAIL) == emails_before + 1)
    found = await step("GET $CALLBACK/v1/callbacks?phone=0401234567&queue=walk-billing", anna)
    callback, *earlier = found.json()["items"]
    assert all(item["status"] == "completed" for item in earlier), earlier
    assert (callback["queue"], callback["language"], callback["language_known"]) == (
        "walk-billing",
        "fi",
        True,
    )
    # ASAP: a seat held in the queue's plan's next slot, and due at once all the same.
    assert callback["status"] == "scheduled"
    slot_in = datetime.fromisoformat(callback["slot_start"]) - datetime.now(UTC)
    assert slot_in <= timedelta(minutes=5)
    assert datetime.fromisoformat(callback["due_at"]) <= datetime.now(UTC)

    # 6. Anna claims it (not the demo's callbacks), and nobody answers.
    claimed = await step("POST $CALLBACK/v1/queue/claim", anna)
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["id"], claimed.json()["agent_id"]) == (callback["id"], "anna")
    assert claimed.json()["status"] == "in_progress"
    step.variables["CB"] = callback["id"]
    tried = await step("POST $CALLBACK/v1/callbacks/$CB/attempts", anna)
    assert tried.status_code == 201, tried.text
    assert tried.json()["callback"]["status"] == "pending"

    # 7. The retry: due the queue's one minute later; nothing for Anna until then; an SMS.
    detail = (await step("GET $CALLBACK/v1/callbacks/$CB", anna)).json()
    assert detail["attempt_count"] == 1
    [attempt] = detail["attempts"]
    assert attempt["next_attempt_at"] == detail["due_at"]
    wait = datetime.fromisoformat(detail["due_at"]) - datetime.fromisoformat(attempt["created_at"])
    assert wait == timedelta(minutes=1)
    nothing = await step("POST $CALLBACK/v1/queue/claim", anna)
    assert nothing.status_code == 204, nothing.text
    await eventually(lambda: len(sent_to(outbox, MAIJA)) == texts_before + 2)

    # The minute the reader's claim loop waits, skipped: the retry becomes due now.
    await make_due(sessions, callback["id"])

    # 8. The second try reaches the customer.
    again = await step("POST $CALLBACK/v1/queue/claim", anna)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == callback["id"]
    reached = await step("POST $CALLBACK/v1/callbacks/$CB/attempts", anna)
    assert reached.status_code == 201, reached.text
    assert reached.json()["callback"]["status"] == "completed"
    assert reached.json()["callback"]["outcome"] == "reached"

    # 9. The customer's timeline, once history has every event (the reader asks once).
    auth = {"authorization": f"Bearer {anna}"}

    async def complete() -> bool:
        url = stack.url("history") + "/v1/customers"
        customers = (await client.get(url, params={"phone": MAIJA}, headers=auth)).json()
        if not customers["items"]:
            return False
        page = await client.get(f"{url}/{customers['items'][0]['id']}/timeline", headers=auth)
        newest: dict[str, Any] = page.json()["items"][0]
        return (newest["type"], newest["subject"]["id"]) == ("callback_completed", callback["id"])

    await eventually(complete)
    customers = await step("GET $HISTORY/v1/customers?phone=0401234567", anna)
    step.variables["CUSTOMER"] = customers.json()["items"][0]["id"]
    page = await step("GET $HISTORY/v1/customers/$CUSTOMER/timeline", anna)
    events = [event["type"] for event in page.json()["items"]]
    assert events[:11] == [
        "callback_completed",
        "callback_attempted",
        "callback_claimed",
        "notification_sent",
        "callback_attempted",
        "callback_claimed",
        "notification_sent",
        "notification_sent",
        "callback_scheduled",
        "callback_created",
        "missed_call",
    ], events

    # 10. Sven calls Swedish support: only Björn gets his callback.
    sven = {"email": "sven@example.se", "name": "Sven", "language": "sv"}
    call = signed("sv", "+46 70 123 45 67", "+46 8 123 456 78", sven)
    answer = await step("POST $INTAKE/v1/webhooks/generic", **call)
    assert answer.status_code == 202, answer.text

    async def waiting() -> bool:
        url = stack.url("callback") + "/v1/queue"
        view = await client.get(url, params={"queue": "walk-support"}, headers=auth)
        return bool(view.json()["due"])

    await eventually(waiting)  # the reader's `sleep 2`
    view = await step("GET $CALLBACK/v1/queue?queue=walk-support", bjorn)
    assert [item["phone"] for item in view.json()["due"]] == [SVEN], view.text
    not_annas = await step("POST $CALLBACK/v1/queue/claim", anna)
    assert not_annas.status_code == 204, not_annas.text
    bjorns = await step("POST $CALLBACK/v1/queue/claim", bjorn)
    assert bjorns.status_code == 200, bjorns.text
    assert (bjorns.json()["phone"], bjorns.json()["queue"]) == (SVEN, "walk-support")
    step.variables["SV"] = bjorns.json()["id"]
    done = await step("POST $CALLBACK/v1/callbacks/$SV/attempts", bjorn)
    assert done.status_code == 201, done.text
    assert done.json()["callback"]["status"] == "completed"

    step.finished()


async def test_the_walkthrough_in_the_api_doc_works_whatever_ran_before(
    stack: Stack, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    # What a reader may have done first (issue #23): `make demo` twice leaves two callbacks
    # waiting in its `billing` queue, due at once.
    demo_key = await create_key(stack, "--scope", "history:read", "--scope", "callbacks:read")
    for _ in range(2):
        await cli(stack, "demo", "--timeout", "60", env={"RINGBACK_DEMO_API_KEY": demo_key})

    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(2):
            await walk_the_day(stack, client, sessions, tmp_path / "outbox")

        # The demo's callbacks are still waiting: nobody in the walk-through took them.
        left = await client.get(
            stack.url("callback") + "/v1/queue",
            params={"queue": "billing"},
            headers={"authorization": f"Bearer {demo_key}"},
        )
    assert left.json()["counts"]["due"] + left.json()["counts"]["overdue"] == 2, left.text


def test_every_curl_in_the_walkthrough_shows_what_went_wrong() -> None:
    # doc_commands() refuses a curl without --fail-with-body; an answer thrown away is hidden.
    assert len(doc_commands()) > 20
    assert "/dev/null" not in walkthrough()
