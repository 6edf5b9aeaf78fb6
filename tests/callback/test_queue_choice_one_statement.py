"""Issue #21: a create chooses its queue and reads its rules in one round trip.

`queues.choose` resolves the queue named, else the one owning the number dialed, else
`default`, in one statement, and hands back the row it read: the rules the create uses come
from that row and must equal what `queues.rules` reads for the chosen key. A create's look-up
of the number's open callback in the queue chosen rides in the same statement, and so do its
stored answer and the do-not-call list.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import delete, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import queues
from services.callback.models import Queue
from services.callback.settings import CallbackSettings
from tests.callback.helpers import callback_body, put_queue

BILLING_NUMBER = "+358923123456"
SALES_NUMBER = "+358923999999"
NOBODYS_NUMBER = "+358923000000"


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement sent from this process while the block runs."""
    seen: list[str] = []

    def hook(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", hook)


@pytest.fixture
async def two_queues(client: AsyncClient, admin: dict[str, str]) -> None:
    await put_queue(client, admin, "billing", numbers=[BILLING_NUMBER], sla_minutes=30)
    await put_queue(client, admin, "sales", numbers=[SALES_NUMBER], timezone="Europe/Stockholm")
    # `default` exists as the migrations and the API leave it.
    response = await client.get("/v1/queues/default", headers=admin)
    assert response.status_code == 200, response.text


CASES = [
    # named, dialed, chosen, why a named queue was not taken
    ("billing", None, "billing", None),
    ("billing", SALES_NUMBER, "billing", None),
    (None, SALES_NUMBER, "sales", None),
    (None, NOBODYS_NUMBER, "default", None),
    (None, None, "default", None),
    ("default", SALES_NUMBER, "default", None),
    ("nope", SALES_NUMBER, "sales", "no queue is called 'nope'"),
    ("nope", NOBODYS_NUMBER, "default", "no queue is called 'nope'"),
    ("nope", None, "default", "no queue is called 'nope'"),
]


@pytest.mark.parametrize(("named", "dialed", "chosen", "reason"), CASES)
async def test_the_queue_is_chosen_in_one_statement_with_the_rules_of_the_general_path(
    two_queues: None,
    sessions: async_sessionmaker[AsyncSession],
    settings: CallbackSettings,
    named: str | None,
    dialed: str | None,
    chosen: str,
    reason: str | None,
) -> None:
    async with sessions() as session:
        with _statements() as sent:
            choice = await queues.choose(session, named=named, dialed=dialed)
        assert (choice.key, choice.reason) == (chosen, reason)
        assert len(sent) == 1, sent
        assert choice.rules(settings) == await queues.rules(session, settings, chosen)


async def test_without_a_default_row_the_site_rules_apply_as_before(
    two_queues: None,
    sessions: async_sessionmaker[AsyncSession],
    settings: CallbackSettings,
) -> None:
    async with sessions() as session:
        await session.execute(delete(Queue).where(Queue.key == queues.DEFAULT))
        choice = await queues.choose(session, named="nope", dialed=NOBODYS_NUMBER)
        assert (choice.key, choice.reason, choice.queue) == (
            "default",
            "no queue is called 'nope'",
            None,
        )
        assert choice.rules(settings) == queues.rules_of(None, settings)
        assert choice.rules(settings) == await queues.rules(session, settings, "default")
        await session.rollback()


def _reads(sent: list[str], table: str) -> int:
    return sum(
        1
        for s in sent
        if s.lstrip().startswith(("SELECT", "WITH chosen")) and f"callback.{table}" in s
    )


async def test_a_create_reads_the_queues_and_the_earlier_answer_once_each(
    two_queues: None, client: AsyncClient, auth: dict[str, str]
) -> None:
    body = callback_body(queue="nope", dialed=SALES_NUMBER)
    with _statements() as sent:
        created = await client.post("/v1/callbacks", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert _reads(sent, "queues") == 1
    # The number's open callback in the queue chosen (none here), the stored answer and the
    # do-not-call list: all asked with the choice, in its one statement.
    assert _reads(sent, "callbacks") == 1
    assert _reads(sent, "callback_requests") == 1
    assert _reads(sent, "do_not_call") == 1
    (choice,) = [s for s in sent if s.lstrip().startswith("WITH chosen")]
    assert all(f"callback.{t}" in choice for t in ("callback_requests", "do_not_call"))

    detail = await client.get(f"/v1/callbacks/{created.json()['id']}", headers=auth)
    assert (detail.json()["queue"], detail.json()["queue_reason"]) == (
        "sales",
        "no queue is called 'nope'",
    )
    replay = await client.post("/v1/callbacks", json=body, headers=auth)
    assert (replay.status_code, replay.json()) == (200, created.json())
