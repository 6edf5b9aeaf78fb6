"""Issue #21: an ingest batch's statements read the same whatever the batch's size.

Each distinct statement text is prepared and kept by asyncpg on every connection (up to 100
a connection). Statements whose text grew with the batch (`IN` with a parameter per value,
multi-row `VALUES`) made a statement per batch size, and under a backlog, when batches come
in every size, history's memory grew by them (bench/RESULTS.md: 122 MiB at 90 calls/s, 113
with the batches' statements written once).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from httpx import AsyncClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.history.conftest import make_event


@contextmanager
def _statements() -> Iterator[set[str]]:
    seen: set[str] = set()

    def hook(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.add(statement)

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", hook)


_INGEST_TABLES = ("history.events", "history.customer")


def _batch(size: int, first_number: int) -> list[dict[str, Any]]:
    # New customers each time, so customers, identities and events are all written.
    return [make_event(customer={"phone": f"+35840{first_number + i:07d}"}) for i in range(size)]


async def test_batches_of_any_size_send_the_same_statements(
    client: AsyncClient, writer: dict[str, str]
) -> None:
    sent: list[set[str]] = []
    # The first batch also makes the month's partition and caches the caller's key.
    warm = await client.post("/v1/events:batch", json={"events": _batch(1, 0)}, headers=writer)
    assert warm.status_code == 200, warm.text
    for size, first in ((2, 1_000_000), (7, 2_000_000)):
        with _statements() as seen:
            response = await client.post(
                "/v1/events:batch", json={"events": _batch(size, first)}, headers=writer
            )
        assert response.status_code == 200, response.text
        assert {item["status"] for item in response.json()["items"]} == {"created"}
        # What the batch wrote and read; not the background passes (webhooks, gauges).
        sent.append({s for s in seen if any(t in s for t in _INGEST_TABLES)})
    assert sent[0], "no statement was seen"
    only_in_one = sent[0] ^ sent[1]
    assert not only_in_one, "\n\n".join(sorted(only_in_one))
