"""Claims racing across two callback processes and two queues: each callback to one agent."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from httpx import AsyncClient, Limits, Response

from tests.callback.conftest import InsertCallbacks
from tests.callback.helpers import put_agent, put_queue
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

QUEUES = ("billing", "sales")
PER_QUEUE = 60
AGENTS_PER_QUEUE = 6
# More claims than callbacks in each queue, so the last ones race for what is left.
CLAIMS_PER_QUEUE = 90


@pytest.fixture
def two_callbacks(
    base_env: dict[str, str], clean_db: None, tmp_path: Path
) -> Iterator[tuple[Stack, Stack]]:
    """Two `ringback serve callback` processes on ports of their own, one database."""
    extra = {"RINGBACK_SINK_DIR": str(tmp_path / "sink")}
    with ExitStack() as stacks:
        first, second = (
            stacks.enter_context(
                running_stack(base_env, tmp_path / f"logs-{n}", extra, ("callback",))
            )
            for n in (1, 2)
        )
        yield first, second


async def test_concurrent_claims_on_two_processes_hand_each_callback_out_once(
    two_callbacks: tuple[Stack, Stack],
    auth: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
    insert_callbacks: InsertCallbacks,
) -> None:
    urls = [stack.url("callback") for stack in two_callbacks]
    admin = {"Authorization": f"Bearer {await make_key('admin')}"}
    agents = {queue: [f"{queue}-{n}" for n in range(AGENTS_PER_QUEUE)] for queue in QUEUES}
    queue_of = {agent: queue for queue, names in agents.items() for agent in names}
    limits = Limits(max_connections=200)
    async with (
        AsyncClient(base_url=urls[0], limits=limits, timeout=60) as one,
        AsyncClient(base_url=urls[1], limits=limits, timeout=60) as two,
    ):
        for queue in QUEUES:
            await put_queue(one, admin, queue)
            for agent in agents[queue]:
                await put_agent(two, admin, agent, queues=[queue])
        # The same numbers in both queues: one open callback per number per queue.
        available = {queue: set(await insert_callbacks(PER_QUEUE, queue=queue)) for queue in QUEUES}

        async def claim(n: int, agent: str) -> tuple[str, Response]:
            http = (one, two)[n % 2]
            return agent, await http.post("/v1/queue/claim", json={"agent_id": agent}, headers=auth)

        calls = [
            claim(n, names[n % AGENTS_PER_QUEUE])
            for names in agents.values()
            for n in range(CLAIMS_PER_QUEUE)
        ]
        answers = await asyncio.gather(*calls)

        assert {r.status_code for _, r in answers} <= {200, 204}, [
            r.text for _, r in answers if r.status_code not in (200, 204)
        ]
        handed = [(agent, r.json()) for agent, r in answers if r.status_code == 200]
        ids = Counter(callback["id"] for _, callback in handed)
        assert [i for i, times in ids.items() if times > 1] == []
        for agent, callback in handed:
            assert callback["queue"] == queue_of[agent], (agent, callback["id"])
            assert callback["id"] in available[queue_of[agent]]
            assert callback["agent_id"] == agent
        assert set(ids) == available["billing"] | available["sales"]
        assert len(handed) == 2 * PER_QUEUE

        # Nothing is left for anyone, on either process.
        for n, agent in enumerate(queue_of):
            _, late = await claim(n, agent)
            assert late.status_code == 204, late.text
