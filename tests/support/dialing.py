"""An agent at the Call button (§10), for the tests that drive dialing through real processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

import httpx

from tests.support.stack import Stack
from tests.support.twilio_calls import call_params, play

QUEUE_NUMBER = "+358942451000"
AGENT_PHONE = "+358401110000"
CUSTOMER = "+358407654321"


async def wait_until(check: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


class Agent:
    """The agent's front end: a key, and the callback they hold."""

    def __init__(self, stack: Stack, key: str) -> None:
        self.api = httpx.AsyncClient(
            base_url=stack.url("callback"), headers={"authorization": f"Bearer {key}"}
        )
        self.callback_id = ""

    async def callback(self) -> dict[str, Any]:
        answer = await self.api.get(f"/v1/callbacks/{self.callback_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def dial(self, **body: Any) -> httpx.Response:
        return await self.api.post(
            f"/v1/callbacks/{self.callback_id}/dial", json={"agent_id": "anna", **body}
        )

    async def dial_status(self, wanted: str, seconds: float = 30.0) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            dials = (await self.callback())["dials"]
            return dials[0] if dials and dials[0]["status"] == wanted else None

        found: dict[str, Any] = await wait_until(check, seconds)
        return found


async def ready_agent(
    stack: Stack,
    make_key: Callable[..., Awaitable[str]],
    opened: list[httpx.AsyncClient],
    **queue_fields: Any,
) -> Agent:
    """A queue with its own number, Anna with a phone on it, and a callback she holds."""
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    agent = Agent(stack, await make_key("callbacks:read", "callbacks:write"))
    opened.append(agent.api)
    async with httpx.AsyncClient(base_url=stack.url("callback")) as client:
        queue = {
            "name": "Billing",
            "numbers": [QUEUE_NUMBER],
            "caller_id": QUEUE_NUMBER,
            **queue_fields,
        }
        answer = await client.put("/v1/queues/billing", json=queue, headers=admin)
        assert answer.status_code in (200, 201), answer.text
        anna = {"name": "Anna", "queues": ["billing"], "languages": ["fi"], "phone": AGENT_PHONE}
        answer = await client.put("/v1/agents/anna", json=anna, headers=admin)
        assert answer.status_code in (200, 201), answer.text
    await agent.api.put("/v1/agents/anna/presence", json={"status": "available"})
    created = await agent.api.post(
        "/v1/callbacks",
        json={
            "request_id": f"dial-{time.monotonic_ns()}",
            "source": "missed_call",
            "first_contact_at": datetime.now(UTC).isoformat(),
            "phone": CUSTOMER,
            "queue": "billing",
            "language": "fi",
        },
    )
    assert created.status_code == 201, created.text
    claimed = await agent.api.post("/v1/queue/claim", json={"agent_id": "anna"})
    assert claimed.status_code == 200, claimed.text
    agent.callback_id = claimed.json()["id"]
    return agent


def gather_of(call_twiml: ET.Element) -> ET.Element:
    gather = call_twiml.find("Gather")
    assert gather is not None
    return gather


async def press_one(client: httpx.AsyncClient, call_sid: str, action: str) -> ET.Element:
    answer = await play(client, action, call_params(call_sid, "in-progress", Digits="1"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    return ET.fromstring(answer.content)
