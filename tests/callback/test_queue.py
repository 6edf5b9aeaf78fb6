"""The agent queue: claims, leases, attempts through the retry policy, expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import agents
from services.callback.capacity import CapacityPlan
from services.callback.jobs import ArqNotificationQueue
from services.callback.models import Attempt, Callback
from services.callback.settings import CallbackSettings
from services.callback.tasks import WorkerState, run_expiry
from shared.db import commit
from shared.service_app import create_redis
from shared.vocabulary import TERMINAL_STATUSES, AttemptOutcome
from tests.callback.conftest import InsertCallbacks, ReadNotificationsFn, ReadOutboxFn
from tests.callback.helpers import plan_body


async def _claim(client: AsyncClient, auth: dict[str, str], agent: str) -> Any:
    return await client.post("/v1/queue/claim", json={"agent_id": agent}, headers=auth)


async def _set(sessions: async_sessionmaker[AsyncSession], callback_id: str, **values: Any) -> None:
    async with sessions() as session:
        await session.execute(update(Callback).where(Callback.id == callback_id).values(**values))
        await session.commit()


async def _get(sessions: async_sessionmaker[AsyncSession], callback_id: str) -> Callback:
    async with sessions() as session:
        callback = await session.get(Callback, callback_id)
        assert callback is not None
        return callback


async def test_two_agents_at_once_get_different_callbacks_and_a_third_gets_204(
    client: AsyncClient, auth: dict[str, str], insert_callbacks: InsertCallbacks
) -> None:
    ids = await insert_callbacks(2)

    first, second = await asyncio.gather(_claim(client, auth, "anna"), _claim(client, auth, "ben"))
    third = await _claim(client, auth, "cecilia")

    assert (first.status_code, second.status_code) == (200, 200)
    assert {first.json()["id"], second.json()["id"]} == set(ids)
    assert first.json()["agent_id"] == "anna"
    assert first.json()["status"] == "in_progress"
    assert third.status_code == 204
    assert third.content == b""


async def test_a_claim_waits_for_a_callback_the_worker_holds_for_a_moment(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The worker books a callback and records its confirmation in a short transaction that
    # holds the row; an agent claiming just then is handed it, not told nothing is due.
    [callback_id] = await insert_callbacks(1)
    async with sessions() as worker:
        await worker.execute(select(Callback).where(Callback.id == callback_id).with_for_update())
        claim = asyncio.create_task(_claim(client, auth, "anna"))
        await asyncio.sleep(0.3)
        assert not claim.done()
        await worker.commit()
    claimed = await claim
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["id"] == callback_id


async def test_fifty_agents_racing_for_twenty_callbacks(
    client: AsyncClient, auth: dict[str, str], insert_callbacks: InsertCallbacks
) -> None:
    ids = await insert_callbacks(20)
    answers = await asyncio.gather(*(_claim(client, auth, f"agent-{i}") for i in range(50)))
    claimed = [a.json()["id"] for a in answers if a.status_code == 200]
    assert sorted(claimed) == sorted(ids)
    assert sum(a.status_code == 204 for a in answers) == 30


async def test_most_urgent_first_and_nothing_before_it_is_due(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    (old,) = await insert_callbacks(1, due_at=now - timedelta(minutes=30))
    (new,) = await insert_callbacks(1, phone="+358402000001", due_at=now - timedelta(minutes=1))
    (urgent,) = await insert_callbacks(1, phone="+358402000002", priority=5)
    (later,) = await insert_callbacks(1, phone="+358402000003", due_at=now + timedelta(hours=1))

    order = [(await _claim(client, auth, f"a{i}")).json()["id"] for i in range(3)]

    assert order == [urgent, old, new]
    assert (await _claim(client, auth, "a4")).status_code == 204
    await _set(sessions, later, due_at=now - timedelta(seconds=1))
    assert (await _claim(client, auth, "a5")).json()["id"] == later


async def test_a_lapsed_lease_returns_to_the_queue_and_renewal_keeps_it(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
) -> None:
    (callback_id,) = await insert_callbacks(1)
    claimed = (await _claim(client, auth, "anna")).json()
    lease = datetime.fromisoformat(claimed["lease_expires_at"])
    assert timedelta(minutes=14) < lease - datetime.now(UTC) <= timedelta(minutes=15)

    # Renewal by the holder extends it; by anyone else is refused.
    await _set(sessions, callback_id, lease_expires_at=datetime.now(UTC) + timedelta(minutes=1))
    renewed = await client.post(
        f"/v1/callbacks/{callback_id}/lease", json={"agent_id": "anna"}, headers=auth
    )
    assert renewed.status_code == 200
    assert datetime.fromisoformat(renewed.json()["lease_expires_at"]) > lease - timedelta(seconds=5)
    stranger = await client.post(
        f"/v1/callbacks/{callback_id}/lease", json={"agent_id": "ben"}, headers=auth
    )
    assert stranger.status_code == 409
    assert (await _claim(client, auth, "ben")).status_code == 204

    # Anna goes quiet: once her lease runs out, Ben gets the callback and Anna is refused.
    await _set(sessions, callback_id, lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    taken = await _claim(client, auth, "ben")
    assert taken.status_code == 200
    assert (taken.json()["id"], taken.json()["agent_id"]) == (callback_id, "ben")
    late = await client.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": "anna", "outcome": "reached"},
        headers=auth,
    )
    assert late.status_code == 409
    events = [r.payload for r in await read_outbox()]
    returned = [e for e in events if e["data"].get("reason") == "lease_expired"]
    assert len(returned) == 1
    assert returned[0]["data"]["status"] == "pending"
    claims = [e for e in events if e["type"] == "callback_claimed"]
    assert [e["data"]["agent_id"] for e in claims] == ["anna", "ben"]
    assert claims[-1]["actor"] == {"kind": "agent", "id": "ben"}


async def test_the_lease_job_returns_lapsed_claims(
    settings: CallbackSettings,
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (callback_id,) = await insert_callbacks(1)
    await _claim(client, auth, "anna")
    await _set(sessions, callback_id, lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    async with sessions() as session:
        assert await agents.release_lapsed_leases(session=session) == 1
        await session.commit()
    callback = await _get(sessions, callback_id)
    assert (callback.status, callback.agent_id, callback.lease_expires_at) == (
        "pending",
        None,
        None,
    )


async def _attempt(
    client: AsyncClient, auth: dict[str, str], callback_id: str, outcome: str, agent: str = "anna"
) -> Any:
    return await client.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": agent, "outcome": outcome, "note": "soitettu"},
        headers=auth,
    )


async def test_an_attempt_on_an_unclaimed_callback_says_to_claim_it_first(
    client: AsyncClient, auth: dict[str, str], insert_callbacks: InsertCallbacks
) -> None:
    (callback_id,) = await insert_callbacks(1)

    unclaimed = await _attempt(client, auth, callback_id, "reached")

    assert unclaimed.status_code == 409
    body = unclaimed.json()
    assert body["type"] == "urn:ringback:problem:not-claimant"
    assert body["current_status"] == "pending"
    assert "claim it first" in body["detail"]
    assert "POST /v1/queue/claim" in body["detail"]
    # Claimed by someone else, claiming is no advice: the claim is not theirs to take.
    assert (await _claim(client, auth, "anna")).status_code == 200
    others = await _attempt(client, auth, callback_id, "reached", agent="ben")
    assert others.status_code == 409
    assert others.json()["type"] == "urn:ringback:problem:not-claimant"
    assert "claim it first" not in others.json()["detail"]
    assert "Another agent holds the claim" in others.json()["detail"]


async def test_reached_completes(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    read_outbox: ReadOutboxFn,
    read_notifications: ReadNotificationsFn,
) -> None:
    (callback_id,) = await insert_callbacks(1)
    await _claim(client, auth, "anna")
    # Only the claiming agent may record.
    assert (await _attempt(client, auth, callback_id, "reached", agent="ben")).status_code == 409

    answer = await _attempt(client, auth, callback_id, "reached")

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["attempt"]["number"] == 1
    assert body["callback"]["status"] == "completed"
    assert body["callback"]["outcome"] == "reached"
    assert body["callback"]["agent_id"] is None
    assert (await _attempt(client, auth, callback_id, "reached")).status_code == 409
    types = [r.payload["type"] for r in await read_outbox()]
    assert types[-2:] == ["callback_attempted", "callback_completed"]
    assert await read_notifications(callback_id) == []
    detail = (await client.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
    assert [(a["outcome"], a["agent_id"]) for a in detail["attempts"]] == [("reached", "anna")]
    mine = (await client.get("/v1/callbacks", params={"agent_id": "anna"}, headers=auth)).json()
    assert mine["items"] == []


async def test_unanswered_tries_follow_the_retry_policy_then_fail(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
    read_notifications: ReadNotificationsFn,
) -> None:
    (callback_id,) = await insert_callbacks(1)
    waits = []
    for try_number, outcome in enumerate(("no_answer", "busy"), start=1):
        claimed = await _claim(client, auth, "anna")
        assert claimed.json()["id"] == callback_id
        mine = (await client.get("/v1/callbacks", params={"agent_id": "anna"}, headers=auth)).json()
        assert [c["id"] for c in mine["items"]] == [callback_id]
        before = datetime.now(UTC)
        answer = await _attempt(client, auth, callback_id, outcome)
        assert answer.status_code == 201, answer.text
        callback = answer.json()["callback"]
        assert (callback["status"], callback["attempt_count"]) == ("pending", try_number)
        due = datetime.fromisoformat(callback["due_at"])
        waits.append(round((due - before).total_seconds() / 60))
        # Not due before the retry time.
        assert (await _claim(client, auth, "anna")).status_code == 204
        await _set(sessions, callback_id, due_at=datetime.now(UTC) - timedelta(seconds=1))
    assert waits == [15, 120]

    await _claim(client, auth, "anna")
    last = await _attempt(client, auth, callback_id, "voicemail")
    assert last.json()["callback"]["status"] == "failed"
    assert last.json()["callback"]["outcome"] == "attempts_exhausted"

    tried = [n for n in await read_notifications(callback_id) if n.kind == "tried"]
    assert [n.channel for n in tried] == ["sms"] * 3
    assert len({n.event_key for n in tried}) == 3
    assert "Yritimme soittaa sinulle" in tried[0].body
    assert "Yritämme uudelleen" in tried[0].body
    assert "Yritämme uudelleen" not in tried[-1].body
    events = [r.payload for r in await read_outbox()]
    attempted = [e for e in events if e["type"] == "callback_attempted"]
    assert [e["data"]["attempt_outcome"] for e in attempted] == ["no_answer", "busy", "voicemail"]
    assert attempted[0]["data"]["status"] == "pending"
    assert events[-1]["type"] == "callback_failed"


async def test_wrong_number_and_declined_fail_at_once_without_sms(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    read_notifications: ReadNotificationsFn,
) -> None:
    first, second = await insert_callbacks(2)
    for outcome in ("wrong_number", "declined"):
        claimed = (await _claim(client, auth, "anna")).json()["id"]
        answer = await _attempt(client, auth, claimed, outcome)
        assert answer.json()["callback"]["status"] == "failed"
        assert answer.json()["callback"]["outcome"] == outcome
    assert await read_notifications(first) == []
    assert await read_notifications(second) == []
    bad = await client.post(
        f"/v1/callbacks/{first}/attempts",
        json={"agent_id": "anna", "outcome": "maybe"},
        headers=auth,
    )
    assert bad.status_code == 422


async def test_retries_are_moved_into_business_hours(
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
    admin: dict[str, str],
    client: AsyncClient,
) -> None:
    plan = plan_body(hours=("08:00", "16:00"), days=("mon", "tue", "wed", "thu", "fri"))
    plan["closed_dates"] = ["2026-12-07"]
    assert (await client.put("/v1/capacity", json=plan, headers=admin)).status_code == 200
    redis = create_redis(settings)
    queue = ArqNotificationQueue(redis)
    # Friday 2026-12-04 15:50 local: +15 min is after closing; Monday 7.12. is a holiday.
    friday = datetime(2026, 12, 4, 13, 50, tzinfo=UTC)
    cases = [
        (friday, "no_answer", datetime(2026, 12, 8, 6, 0, tzinfo=UTC)),
        # Tuesday 10:00 local: +15 min stays inside business hours.
        (datetime(2026, 12, 8, 8, 0, tzinfo=UTC), "busy", datetime(2026, 12, 8, 8, 15, tzinfo=UTC)),
        # Tuesday 15:00 local, second try: +2 h is 17:00, so Wednesday 08:00.
    ]
    ids = await insert_callbacks(len(cases), due_at=friday - timedelta(hours=1))
    try:
        for callback_id, (now, outcome, expected) in zip(ids, cases, strict=True):
            async with sessions() as session:
                claimed = await agents.claim_next(
                    session=session, settings=settings, agent_id="anna", now=now
                )
                assert claimed is not None
                await commit(session)
            async with sessions() as session:
                result = await agents.record_attempt(
                    session=session,
                    settings=settings,
                    callback_id=claimed.id,
                    agent_id="anna",
                    outcome=AttemptOutcome(outcome),
                    note=None,
                    queue=queue,
                    now=now,
                )
                await commit(session)
            assert result.callback.due_at == expected, callback_id
            assert result.attempt.next_attempt_at == expected

        (second_try,) = await insert_callbacks(
            1, phone="+358403000009", attempt_count=1, priority=10
        )
        now = datetime(2026, 12, 8, 13, 0, tzinfo=UTC)
        async with sessions() as session:
            await session.execute(
                update(Callback).where(Callback.id == second_try).values(due_at=now)
            )
            await commit(session)
        async with sessions() as session:
            session.add(
                Attempt(
                    callback_id=second_try, number=1, agent_id="x", outcome="busy", created_at=now
                )
            )
            await commit(session)
        async with sessions() as session:
            claimed = await agents.claim_next(
                session=session, settings=settings, agent_id="anna", now=now
            )
            assert claimed is not None
            assert claimed.id == second_try
            await commit(session)
        async with sessions() as session:
            result = await agents.record_attempt(
                session=session,
                settings=settings,
                callback_id=second_try,
                agent_id="anna",
                outcome=AttemptOutcome.NO_ANSWER,
                note=None,
                queue=queue,
                now=now,
            )
            await commit(session)
        assert result.attempt.number == 2
        assert result.callback.due_at == datetime(2026, 12, 9, 6, 0, tzinfo=UTC)
    finally:
        await redis.aclose(close_connection_pool=True)


def test_next_business_moment_across_a_weekend() -> None:
    from services.callback.capacity import next_business_moment

    plan = CapacityPlan.model_validate(
        plan_body(hours=("08:00", "16:00"), days=("mon", "tue", "wed", "thu", "fri"))
    )
    saturday = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert next_business_moment(plan, saturday) == datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    inside = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert next_business_moment(plan, inside) == inside
    empty = CapacityPlan.model_validate(plan_body(days=()))
    assert next_business_moment(empty, saturday) == saturday


async def test_callbacks_not_worked_by_their_deadline_expire_as_sla_breaches(
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    engine: Any,
    insert_callbacks: InsertCallbacks,
    read_outbox: ReadOutboxFn,
    clean_db: None,
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    (overdue,) = await insert_callbacks(1, sla_deadline=past)
    (worked,) = await insert_callbacks(1, phone="+358404000001", sla_deadline=past, attempt_count=1)
    (fine,) = await insert_callbacks(1, phone="+358404000002")
    state = WorkerState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        http=None,  # type: ignore[arg-type]
        sms=None,  # type: ignore[arg-type]
        email=None,  # type: ignore[arg-type]
    )

    assert await run_expiry(state) == 1
    assert await run_expiry(state) == 0

    assert (await _get(sessions, overdue)).status == "expired"
    assert (await _get(sessions, overdue)).outcome == "sla_breached"
    assert (await _get(sessions, worked)).status == "pending"
    assert (await _get(sessions, fine)).status == "pending"
    registry = state.metrics.registry
    assert registry.get_sample_value("ringback_callback_sla_breaches_total") == 1
    expired = [r.payload for r in await read_outbox() if r.payload["type"] == "callback_expired"]
    assert len(expired) == 1
    assert expired[0]["data"]["sla_breach"] is True
    async with sessions() as session:
        statuses = (await session.scalars(select(Callback.status).order_by(Callback.id))).all()
    assert sorted(statuses) == ["expired", "pending", "pending"]


async def test_illegal_transitions_are_409(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from services.callback import lifecycle

    for status, targets in lifecycle.TRANSITIONS.items():
        for target in lifecycle.EVENT_FOR:
            assert lifecycle.can(status, target) == (target in targets)
    assert not any(lifecycle.TRANSITIONS[s] for s in TERMINAL_STATUSES)
    (callback_id,) = await insert_callbacks(1, status="completed")
    lease = await client.post(
        f"/v1/callbacks/{callback_id}/lease", json={"agent_id": "anna"}, headers=auth
    )
    assert lease.status_code == 409
    cancel = await client.post(f"/v1/callbacks/{callback_id}/cancel", headers=auth)
    assert cancel.status_code == 409
    assert cancel.headers["content-type"].startswith("application/problem+json")
