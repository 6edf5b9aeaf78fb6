"""`ringback webhooks add|list|deliveries|replay` as an operator runs it: a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.history.models import Customer, Event, WebhookDelivery
from services.history.webhook_events import announce
from shared.db import utcnow
from tests.support.infra import ROOT


async def ringback(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "webhooks",
        *args,
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_add_list_deliveries_and_replay(
    clean_db: None,
    base_env: dict[str, str],
    tmp_path: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    env = {
        "RINGBACK_DATABASE_URL": base_env["RINGBACK_DATABASE_URL"],
        "RINGBACK_DATA_DIR": str(tmp_path / "data"),
        "RINGBACK_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    code, out, err = await ringback(
        env, "add", "http://127.0.0.1:9/hooks", "--event", "callback.completed"
    )
    assert code == 0, err
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    endpoint_id = out.split()[1]

    code, out, _ = await ringback(env, "list")
    assert code == 0
    assert endpoint_id in out
    assert "callback.completed" in out
    assert secret not in out

    # A delivery that ran out of tries, as the relay leaves it.
    async with sessions() as session:
        now = utcnow()
        customer = Customer(id="0193a000-0000-7000-8000-0000000000c1", created_at=now)
        session.add(customer)
        event = Event(
            id="ev-1",
            customer_id=customer.id,
            occurred_at=now,
            received_at=now,
            channel="phone",
            direction="internal",
            type="callback_completed",
            subject_kind="callback",
            subject_id="cb-1",
            summary="",
            data={"status": "completed"},
        )
        session.add(event)
        await session.flush()
        assert await announce(session, [event], {}) == 1
        await session.execute(
            update(WebhookDelivery).values(dead_at=now, attempts=11, last_status_code=500)
        )
        await session.commit()
        delivery_id = await session.scalar(select(WebhookDelivery.id))

    code, out, _ = await ringback(env, "deliveries", endpoint_id)
    assert code == 0
    assert "callback.completed" in out
    assert "dead" in out
    assert "500" in out

    code, out, err = await ringback(env, "replay", endpoint_id, str(delivery_id))
    assert code == 0, err
    async with sessions() as session:
        row = await session.get(WebhookDelivery, delivery_id)
        assert row is not None
        assert row.dead_at is None
        assert row.attempts == 0

    code, _, err = await ringback(env, "replay", endpoint_id, "999999")
    assert code == 1
    assert "no delivery" in err


async def test_add_refuses_a_private_address_without_the_switch(
    clean_db: None, base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        "RINGBACK_DATABASE_URL": base_env["RINGBACK_DATABASE_URL"],
        "RINGBACK_DATA_DIR": str(tmp_path / "data"),
    }
    code, out, err = await ringback(env, "add", "http://10.1.2.3/hooks")
    assert code == 1
    assert "private" in err
    assert "whsec_" not in out
