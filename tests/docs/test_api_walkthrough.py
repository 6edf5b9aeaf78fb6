"""docs/api.md's day with curl, step by step over HTTP against every process started for real.

The test makes the requests the walk-through's curl commands make, in the same order, and
checks that the document's commands are exactly these: a step added to one and not the other
fails here. The capacity plan is read from the document itself.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback
from services.intake.telephony.standard_webhooks import sign
from shared.jsonutil import dumps
from tests.support.infra import ROOT
from tests.support.signing import new_secret
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "api.md"
SECRET = new_secret()
PHONE = "0401234567"


def walkthrough() -> str:
    text = DOC.read_text()
    return text[text.index("## A day, with curl") : text.index("## Operators")]


def doc_requests() -> list[str]:
    """`METHOD $SERVICE/path` of every curl in the walk-through, in order."""
    joined = walkthrough().replace("\\\n", " ")
    requests = []
    for line in joined.splitlines():
        if "curl " not in line:
            continue
        url = re.search(r'"(\$(?:INTAKE|CALLBACK|HISTORY)/[^"]*)"', line)
        assert url, f"a curl in docs/api.md without a quoted $SERVICE URL: {line}"
        method = re.search(r" -X ([A-Z]+)", line)
        requests.append(f"{method.group(1) if method else 'GET'} {url.group(1)}")
    return requests


def doc_capacity_plan() -> dict[str, Any]:
    text = walkthrough()
    start = text.index("<<'EOF'\n", text.index("/v1/capacity")) + len("<<'EOF'\n")
    plan: dict[str, Any] = json.loads(text[start : text.index("\nEOF\n", start)])
    return plan


class Walk:
    """Requests made as `METHOD $SERVICE/path` templates, the shell variables filled in."""

    def __init__(self, client: httpx.AsyncClient, variables: dict[str, str]) -> None:
        self.client = client
        self.variables = variables
        self.made: list[str] = []

    async def __call__(self, request: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        self.made.append(request)
        method, template = request.split(" ", 1)
        url = re.sub(r"\$([A-Z_]+)", lambda m: self.variables[m.group(1)], template)
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return await self.client.request(method, url, headers=headers, **kwargs)


@pytest.fixture
def stack(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        "RINGBACK_SINK_DIR": str(tmp_path / "outbox"),
        # As the walk-through suggests, so the retry comes round in a minute.
        "RINGBACK_RETRY_DELAYS_MINUTES": "1",
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def create_key(stack: Stack, *args: str) -> str:
    """`ringback api-key create ... | tail -n 1`, as step 1 does."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", "api-key", "create", *args,
        cwd=ROOT, env=stack.env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().splitlines()[-1]


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


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*")) if folder.exists() else []


async def test_the_walkthrough_in_the_api_doc_works(
    stack: Stack, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    variables = {s.upper(): stack.url(s) for s in ("intake", "callback", "history")}
    async with httpx.AsyncClient(timeout=10) as client:
        step = Walk(client, variables)

        # 1. API keys
        admin = await create_key(stack, "--scope", "admin", "--name", "walkthrough-admin")
        agent = await create_key(
            stack, "--scope", "callbacks:read", "--scope", "callbacks:write",
            "--scope", "history:read", "--name", "walkthrough-agent",
        )  # fmt: skip

        # 2. The capacity plan
        plan = doc_capacity_plan()
        stored = await step("PUT $CALLBACK/v1/capacity", admin, json=plan)
        assert stored.status_code == 200, stored.text
        assert stored.json()["default_agents"] == 2

        # 3. A signed missed call
        stamp = int(time.time())
        msg_id = f"msg_{stamp}_{secrets.token_hex(2)}"
        body = dumps(
            {
                "id": f"evt_{stamp}",
                "call_id": f"call-{stamp}",
                "from": "040 123 4567",
                "to": "+358 9 4245 1000",
                "status": "no_answer",
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "queue": "billing",
                "metadata": {
                    "customer": {"email": "maija@example.fi", "name": "Maija", "language": "fi"}
                },
            }
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, msg_id, stamp, body),
        }
        answer = await step("POST $INTAKE/v1/webhooks/generic", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"

        # 4. The confirmation: an SMS and an email in the development sink, a callback.
        sms = await eventually(lambda: files(outbox / "sms"))
        assert "/v1/self/" in sms[0].read_text()
        await eventually(lambda: files(outbox / "email"))
        found = await step(f"GET $CALLBACK/v1/callbacks?phone={PHONE}", agent)
        [callback] = found.json()["items"]
        # ASAP: a seat held in the plan's next slot, and due at once all the same.
        assert callback["status"] == "scheduled"
        slot_in = datetime.fromisoformat(callback["slot_start"]) - datetime.now(UTC)
        assert slot_in <= timedelta(minutes=5)
        assert datetime.fromisoformat(callback["due_at"]) <= datetime.now(UTC)

        # 5. An agent claims it, and nobody answers.
        claimed = await step("POST $CALLBACK/v1/queue/claim", agent, json={"agent_id": "anna"})
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["id"] == callback["id"]
        assert claimed.json()["status"] == "in_progress"
        step.variables["CB"] = callback["id"]
        tried = await step(
            "POST $CALLBACK/v1/callbacks/$CB/attempts",
            agent,
            json={"agent_id": "anna", "outcome": "no_answer"},
        )
        assert tried.status_code == 201, tried.text
        assert tried.json()["callback"]["status"] == "pending"

        # 6. The retry: due one retry delay later; nothing to claim until then; an SMS said so.
        detail = (await step("GET $CALLBACK/v1/callbacks/$CB", agent)).json()
        assert detail["attempt_count"] == 1
        [attempt] = detail["attempts"]
        assert attempt["next_attempt_at"] == detail["due_at"]
        wait = datetime.fromisoformat(detail["due_at"]) - datetime.fromisoformat(
            attempt["created_at"]
        )
        assert wait == timedelta(minutes=1)
        nothing = await step("POST $CALLBACK/v1/queue/claim", agent, json={"agent_id": "anna"})
        assert nothing.status_code == 204
        await eventually(lambda: len(files(outbox / "sms")) == 2)

        # The minute the reader's claim loop waits, skipped: the retry becomes due now.
        await make_due(sessions, callback["id"])

        # 7. The second try reaches the customer.
        again = await step("POST $CALLBACK/v1/queue/claim", agent, json={"agent_id": "anna"})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == callback["id"]
        reached = await step(
            "POST $CALLBACK/v1/callbacks/$CB/attempts",
            agent,
            json={"agent_id": "anna", "outcome": "reached"},
        )
        assert reached.status_code == 201, reached.text
        assert reached.json()["callback"]["status"] == "completed"
        assert reached.json()["callback"]["outcome"] == "reached"

        # 8. The customer's timeline, once history has every event (the reader asks once).
        async def complete() -> bool:
            auth = {"authorization": f"Bearer {agent}"}
            url = variables["HISTORY"] + "/v1/customers"
            customers = (await client.get(url, params={"phone": PHONE}, headers=auth)).json()
            if not customers["items"]:
                return False
            page = await client.get(f"{url}/{customers['items'][0]['id']}/timeline", headers=auth)
            return bool(page.json()["items"]) and page.json()["items"][0]["type"] == (
                "callback_completed"
            )

        await eventually(complete)
        customers = await step(f"GET $HISTORY/v1/customers?phone={PHONE}", agent)
        step.variables["CUSTOMER"] = customers.json()["items"][0]["id"]
        page = await step("GET $HISTORY/v1/customers/$CUSTOMER/timeline", agent)
        events = [event["type"] for event in page.json()["items"]]

    assert events == [
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
    # The document makes the same requests, in the same order.
    assert step.made == doc_requests()
