"""Routing (DESIGN §9): which queue a contact lands in, who may claim it, owners, retries."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import agents
from services.callback.jobs import ArqNotificationQueue
from services.callback.settings import CallbackSettings
from shared.db import commit
from shared.service_app import create_redis
from shared.vocabulary import AttemptOutcome
from tests.callback.conftest import InsertCallbacks, ReadNotificationsFn, ReadOutboxFn
from tests.callback.helpers import (
    callback_body,
    claim,
    is_problem,
    plan_body,
    put_agent,
    put_queue,
    set_callback,
)

HELSINKI = ZoneInfo("Europe/Helsinki")
BILLING_NUMBER = "+358923123456"
SALES_NUMBER = "+358923999999"
MAIJA = "+358401234567"


def _tomorrow_at(hour: int, minute: int = 0) -> datetime:
    day = datetime.now(HELSINKI).date() + timedelta(days=1)
    return datetime.combine(day, time(hour, minute), tzinfo=HELSINKI).astimezone(UTC)


def _at(response: Response, field: str) -> datetime:
    return datetime.fromisoformat(response.json()[field])


async def _two_queues(client: AsyncClient, admin: dict[str, str], **billing: Any) -> None:
    await put_queue(client, admin, "billing", numbers=[BILLING_NUMBER], **billing)
    await put_queue(client, admin, "sales", name="Myynti", numbers=[SALES_NUMBER])


async def _create(client: AsyncClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/callbacks", json=callback_body(**fields), headers=auth)
    assert response.status_code in (200, 201), response.text
    detail = await client.get(f"/v1/callbacks/{response.json()['id']}", headers=auth)
    body: dict[str, Any] = {**detail.json(), "answer": response.status_code}
    return body


async def _attempt(
    client: AsyncClient,
    auth: dict[str, str],
    callback_id: str,
    agent: str,
    outcome: str,
    **more: Any,
) -> Response:
    return await client.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": agent, "outcome": outcome, **more},
        headers=auth,
    )


async def _claims(client: AsyncClient, auth: dict[str, str], agent: str) -> list[str]:
    """Everything `agent` can claim now, in the order handed out."""
    ids = []
    while (answer := await claim(client, auth, agent)).status_code == 200:
        ids.append(answer.json()["id"])
    assert answer.status_code == 204, answer.text
    return ids


# ----------------------------------------------------------------------------- which queue


async def test_a_contact_lands_in_the_named_queue_else_the_dialed_numbers_else_default(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await _two_queues(client, admin)

    named = await _create(client, auth, queue="sales", dialed=BILLING_NUMBER)
    dialed = await _create(client, auth, phone="050 000 0002", dialed=BILLING_NUMBER)
    unknown = await _create(client, auth, phone="050 000 0003", queue="nosuch")
    plain = await _create(client, auth, phone="050 000 0004")
    # An unknown key is no rule that applies: the number dialed still chooses.
    unknown_dialed = await _create(
        client, auth, phone="050 000 0005", queue="nosuch", dialed=BILLING_NUMBER
    )

    assert (named["queue"], named["queue_reason"]) == ("sales", None)
    assert (dialed["queue"], dialed["queue_reason"]) == ("billing", None)
    assert unknown["answer"] == 201
    assert unknown["queue"] == "default"
    assert "nosuch" in unknown["queue_reason"]
    assert (plain["queue"], plain["queue_reason"]) == ("default", None)
    assert unknown_dialed["queue"] == "billing"
    listed = await client.get("/v1/callbacks", params={"queue": "billing"}, headers=auth)
    assert [c["id"] for c in listed.json()["items"]] == [unknown_dialed["id"], dialed["id"]]
    view = await client.get("/v1/queue", params={"queue": "sales"}, headers=auth)
    assert [c["id"] for c in view.json()["due"]] == [named["id"]]
    # Repeated, the view covers several queues (an agent's), in claim order.
    both = await client.get(
        "/v1/queue", params=[("queue", "sales"), ("queue", "default")], headers=auth
    )
    assert {c["id"] for c in both.json()["due"]} == {named["id"], unknown["id"], plain["id"]}
    assert both.json()["counts"]["due"] == 3


async def test_the_queues_sla_sets_the_deadline(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await put_queue(client, admin, "billing", sla_minutes=30)
    first_contact = datetime.now(UTC) - timedelta(minutes=5)
    moment = first_contact.isoformat()
    billing = await _create(client, auth, queue="billing", first_contact_at=moment)
    site = await _create(client, auth, phone="050 000 0002", first_contact_at=moment)
    assert datetime.fromisoformat(billing["sla_deadline"]) == first_contact + timedelta(minutes=30)
    assert datetime.fromisoformat(site["sla_deadline"]) == first_contact + timedelta(minutes=120)


async def test_merging_is_one_open_callback_per_number_per_queue(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await _two_queues(client, admin)

    billing = await _create(client, auth, queue="billing")
    sales = await _create(client, auth, queue="sales")
    again = await _create(client, auth, dialed=BILLING_NUMBER)

    assert (billing["answer"], sales["answer"]) == (201, 201)
    assert billing["id"] != sales["id"]
    assert (again["answer"], again["id"], again["contact_count"]) == (200, billing["id"], 2)
    assert sales["contact_count"] == 1


async def test_language_known_is_false_when_the_contact_gave_none(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await put_queue(client, admin, "billing", languages=["sv", "fi"])
    given = await _create(client, auth, queue="billing")
    guessed = await _create(client, auth, queue="billing", phone="050 000 0002", language=None)
    assert (given["language"], given["language_known"]) == ("fi", True)
    assert guessed["language_known"] is False


# ----------------------------------------------------------------------------- agents


async def test_agents_on_the_roster_and_their_presence(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await put_queue(client, admin, "billing")
    body = {"name": "Anna", "queues": ["billing"], "languages": ["fi", "sv"]}

    created = await client.put("/v1/agents/anna", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["presence"] == "offline"
    assert (await client.put("/v1/agents/anna", json=body, headers=admin)).status_code == 200
    unknown_queue = await client.put(
        "/v1/agents/ben", json={**body, "queues": ["nosuch"]}, headers=admin
    )
    assert is_problem(unknown_queue, 422)
    unknown_language = await client.put(
        "/v1/agents/ben", json={**body, "languages": ["de"]}, headers=admin
    )
    assert is_problem(unknown_language, 422)
    assert is_problem(await client.get("/v1/agents/ben", headers=auth), 404)

    present = await client.put(
        "/v1/agents/anna/presence", json={"status": "available"}, headers=auth
    )
    assert present.status_code == 200, present.text
    got = (await client.get("/v1/agents/anna", headers=auth)).json()
    assert (got["presence"], got["queues"], got["languages"]) == (
        "available",
        ["billing"],
        ["fi", "sv"],
    )
    assert [a["id"] for a in (await client.get("/v1/agents", headers=auth)).json()] == ["anna"]
    lunch = await client.put("/v1/agents/anna/presence", json={"status": "lunch"}, headers=auth)
    assert is_problem(lunch, 422)
    nobody = await client.put("/v1/agents/ben/presence", json={"status": "break"}, headers=auth)
    assert is_problem(nobody, 404)
    assert (await client.delete("/v1/agents/anna", headers=admin)).status_code == 204
    assert (await client.get("/v1/agents", headers=auth)).json() == []


async def test_a_known_agent_claims_only_while_available(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    (callback_id,) = await insert_callbacks(1)
    await put_agent(client, admin, "anna", queues=["default"], presence="offline")

    for presence in ("offline", "break", "wrap_up"):
        await put_agent(client, admin, "anna", queues=["default"], presence=presence)
        refused = await claim(client, auth, "anna")
        assert is_problem(refused, 409), (presence, refused.text)

    await put_agent(client, admin, "anna", queues=["default"])
    taken = await claim(client, auth, "anna")
    assert taken.status_code == 200, taken.text
    assert taken.json()["id"] == callback_id


# ----------------------------------------------------------------------------- routing


async def test_claims_hand_out_only_the_agents_queues_and_languages(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _two_queues(client, admin)
    (billing_fi,) = await insert_callbacks(1, queue="billing", phone="+358501000001")
    (billing_sv,) = await insert_callbacks(1, queue="billing", phone="+358501000002", language="sv")
    (sales_fi,) = await insert_callbacks(1, queue="sales", phone="+358501000003")
    await put_agent(client, admin, "anna", queues=["billing"], languages=["fi"])
    await put_agent(client, admin, "ben", queues=["sales"], languages=["fi", "sv"])
    await put_agent(client, admin, "cecilia", queues=["billing", "sales"], languages=["sv"])

    assert await _claims(client, auth, "anna") == [billing_fi]
    assert await _claims(client, auth, "ben") == [sales_fi]
    assert await _claims(client, auth, "cecilia") == [billing_sv]


async def test_a_callback_whose_language_nobody_knew_goes_to_anyone_in_its_queue(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    await put_queue(client, admin, "billing", languages=["sv"])
    await put_queue(client, admin, "sales", name="Myynti")
    created = await _create(client, auth, queue="billing", language=None)
    (stored,) = await insert_callbacks(
        1, queue="billing", phone="+358501000001", language="sv", language_known=False
    )
    await put_agent(client, admin, "ben", queues=["sales"], languages=["sv"])
    await put_agent(client, admin, "anna", queues=["billing"], languages=["fi"])

    assert await _claims(client, auth, "ben") == []
    assert sorted(await _claims(client, auth, "anna")) == sorted([created["id"], stored])


async def test_after_the_queues_language_wait_anyone_in_the_queue_may_take_it(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await put_queue(client, admin, "billing", language_wait_minutes=10)
    # Sales leaves it to the site's default (15 minutes).
    await put_queue(client, admin, "sales", name="Myynti")
    now = datetime.now(UTC)
    (billing,) = await insert_callbacks(
        1, queue="billing", phone="+358501000001", language="sv", due_at=now
    )
    (sales,) = await insert_callbacks(
        1, queue="sales", phone="+358501000002", language="sv", due_at=now
    )
    await put_agent(client, admin, "anna", queues=["billing"], languages=["fi"])
    await put_agent(client, admin, "ben", queues=["sales"], languages=["fi"])
    await put_agent(client, admin, "outsider", queues=["default"], languages=["fi"])

    await set_callback(sessions, billing, due_at=now - timedelta(minutes=9))
    await set_callback(sessions, sales, due_at=now - timedelta(minutes=14))
    assert await _claims(client, auth, "anna") == []
    assert await _claims(client, auth, "ben") == []

    await set_callback(sessions, billing, due_at=now - timedelta(minutes=11))
    await set_callback(sessions, sales, due_at=now - timedelta(minutes=16))
    assert await _claims(client, auth, "outsider") == []
    assert await _claims(client, auth, "anna") == [billing]
    assert await _claims(client, auth, "ben") == [sales]


async def test_an_agent_unknown_to_the_roster_is_served_from_every_queue(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _two_queues(client, admin)
    await put_agent(client, admin, "anna", queues=["billing"], languages=["fi"])
    ids = [
        *await insert_callbacks(1, queue="billing", phone="+358501000001", language="sv"),
        *await insert_callbacks(1, queue="sales", phone="+358501000002", language="en"),
        *await insert_callbacks(1, phone="+358501000003", language="et"),
    ]
    assert sorted(await _claims(client, auth, "walk-in")) == sorted(ids)


async def test_claims_go_by_priority_then_rank_at_and_the_queue_view_agrees(
    client: AsyncClient, auth: dict[str, str], insert_callbacks: InsertCallbacks
) -> None:
    now = datetime.now(UTC)
    (old,) = await insert_callbacks(1, phone="+358501000001", due_at=now - timedelta(minutes=30))
    (recent,) = await insert_callbacks(1, phone="+358501000002", due_at=now - timedelta(minutes=5))
    # Asked for while waiting in the phone queue an hour ago: ranked by that (§11).
    (waited,) = await insert_callbacks(
        1,
        phone="+358501000003",
        due_at=now - timedelta(minutes=1),
        queued_at=now - timedelta(hours=1),
    )
    (urgent,) = await insert_callbacks(1, phone="+358501000004", priority=3)
    (low,) = await insert_callbacks(
        1, phone="+358501000005", priority=-1, due_at=now - timedelta(hours=2)
    )
    expected = [urgent, waited, old, recent, low]

    view = await client.get("/v1/queue", headers=auth)
    assert [c["id"] for c in view.json()["due"]] == expected
    assert await _claims(client, auth, "anna") == expected


# ----------------------------------------------------------------------------- owners


async def test_an_owned_callback_waits_for_its_owner_until_owner_until(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await put_agent(client, admin, "anna", queues=["default"])
    await put_agent(client, admin, "ben", queues=["default"])
    (callback_id,) = await insert_callbacks(1)
    assert (await claim(client, auth, "anna")).json()["id"] == callback_id
    at = _tomorrow_at(10)

    tried = await _attempt(
        client,
        auth,
        callback_id,
        "anna",
        "no_answer",
        next={"at": at.isoformat(), "owner": True},
    )

    assert tried.status_code == 201, tried.text
    after = tried.json()["callback"]
    assert (after["status"], after["owner_agent_id"]) == ("pending", "anna")
    assert datetime.fromisoformat(after["due_at"]) == at
    assert datetime.fromisoformat(after["owner_until"]) == at + timedelta(minutes=30)

    # Due now, and still Anna's: Ben does not get it, Anna does.
    await set_callback(sessions, callback_id, due_at=datetime.now(UTC) - timedelta(minutes=1))
    assert await _claims(client, auth, "ben") == []
    assert await _claims(client, auth, "anna") == [callback_id]

    again = await _attempt(
        client, auth, callback_id, "anna", "busy", next={"at": at.isoformat(), "owner": True}
    )
    assert again.status_code == 201, again.text
    past = datetime.now(UTC) - timedelta(minutes=1)
    await set_callback(sessions, callback_id, due_at=past - timedelta(minutes=30), owner_until=past)
    assert await _claims(client, auth, "ben") == [callback_id]


async def test_an_owner_given_at_create_or_by_patch_holds_the_callback(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await put_agent(client, admin, "anna", queues=["default"])
    await put_agent(client, admin, "ben", queues=["default"])

    owned = await _create(client, auth, owner_agent_id="anna")
    assert owned["owner_agent_id"] == "anna"
    due = datetime.fromisoformat(owned["due_at"])
    assert datetime.fromisoformat(owned["owner_until"]) == due + timedelta(minutes=30)
    assert await _claims(client, auth, "ben") == []
    assert await _claims(client, auth, "anna") == [owned["id"]]

    loose = await _create(client, auth, phone="050 000 0002")
    patched = await client.patch(
        f"/v1/callbacks/{loose['id']}", json={"owner_agent_id": "ben"}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["owner_agent_id"] == "ben"
    loose_due = datetime.fromisoformat(loose["due_at"])
    assert _at(patched, "owner_until") == loose_due + timedelta(minutes=30)
    assert await _claims(client, auth, "anna") == []

    ended = datetime.now(UTC) - timedelta(seconds=1)
    patched = await client.patch(
        f"/v1/callbacks/{loose['id']}", json={"owner_until": ended.isoformat()}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["owner_agent_id"] == "ben"
    assert await _claims(client, auth, "anna") == [loose["id"]]


async def test_a_new_owner_by_patch_gets_a_hold_of_their_own(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await put_agent(client, admin, "anna", queues=["default"])
    await put_agent(client, admin, "ben", queues=["default"])
    owned = await _create(client, auth, owner_agent_id="anna")
    path = f"/v1/callbacks/{owned['id']}"
    ended = datetime.now(UTC) - timedelta(seconds=1)
    lapsed = await client.patch(path, json={"owner_until": ended.isoformat()}, headers=auth)
    assert lapsed.status_code == 200, lapsed.text

    # Anna's hold ran out; the callback is given to Ben, without saying for how long.
    handed = await client.patch(path, json={"owner_agent_id": "ben"}, headers=auth)

    assert handed.status_code == 200, handed.text
    assert handed.json()["owner_agent_id"] == "ben"
    due = datetime.fromisoformat(owned["due_at"])
    assert _at(handed, "owner_until") == due + timedelta(minutes=30)
    assert await _claims(client, auth, "anna") == []
    assert await _claims(client, auth, "ben") == [owned["id"]]


async def test_an_owner_given_with_a_chosen_slot_holds_it_past_the_slots_start(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    start = _tomorrow_at(10)
    slot_id = start.strftime("%Y-%m-%dT%H:%M:%SZ")

    owned = await _create(client, auth, owner_agent_id="anna", preferred={"slot_id": slot_id})

    assert (owned["status"], owned["slot_id"]) == ("scheduled", slot_id)
    assert datetime.fromisoformat(owned["due_at"]) == start
    # The default is 30 minutes after the due time: the slot's start, not the create.
    assert datetime.fromisoformat(owned["owner_until"]) == start + timedelta(minutes=30)


# ----------------------------------------------------------------------------- attempts


async def test_rescheduled_keeps_the_time_sends_nothing_and_is_not_a_try(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
) -> None:
    plan = plan_body(hours=("08:00", "16:00"))
    del plan["timezone"]
    await put_queue(client, admin, "billing", capacity=plan, retry={"max_tries": 2})
    (callback_id,) = await insert_callbacks(1, queue="billing")
    # 07:00 is before the queue opens: an agreed time is kept all the same.
    agreed = [_tomorrow_at(7), _tomorrow_at(7, 40)]

    for at in agreed:
        assert (await claim(client, auth, "anna")).json()["id"] == callback_id
        answer = await _attempt(
            client, auth, callback_id, "anna", "rescheduled", next={"at": at.isoformat()}
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["callback"]["status"] == "pending"
        assert datetime.fromisoformat(answer.json()["callback"]["due_at"]) == at
        assert datetime.fromisoformat(answer.json()["attempt"]["next_attempt_at"]) == at
        await set_callback(sessions, callback_id, due_at=datetime.now(UTC) - timedelta(minutes=1))
    assert [n.kind for n in await read_notifications(callback_id)] == []

    # Two reschedulings, and the queue's two tries are both still to come.
    await claim(client, auth, "anna")
    first = await _attempt(client, auth, callback_id, "anna", "no_answer")
    assert first.json()["callback"]["status"] == "pending", first.text
    assert [n.kind for n in await read_notifications(callback_id)] == ["tried"]
    await set_callback(sessions, callback_id, due_at=datetime.now(UTC) - timedelta(minutes=1))
    await claim(client, auth, "anna")
    last = await _attempt(client, auth, callback_id, "anna", "no_answer")
    assert (last.json()["callback"]["status"], last.json()["callback"]["outcome"]) == (
        "failed",
        "attempts_exhausted",
    )

    (other,) = await insert_callbacks(1, queue="billing", phone="+358501000001")
    await claim(client, auth, "anna")
    unagreed = await _attempt(client, auth, other, "anna", "rescheduled")
    assert is_problem(unagreed, 422)


async def test_retry_waits_follow_the_queues_policy_per_outcome(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Open round the clock, so no retry time is moved into business hours.
    plan = plan_body()
    del plan["timezone"]
    retry = {"busy": [5], "no_answer": [15, 120], "max_tries": 4}
    await put_queue(client, admin, "billing", capacity=plan, retry=retry)
    (callback_id,) = await insert_callbacks(1, queue="billing")
    # The n-th entry after the n-th try; an outcome's last entry repeats.
    expected = [("no_answer", 15), ("busy", 5), ("no_answer", 120)]

    for number, (outcome, wait) in enumerate(expected, start=1):
        assert (await claim(client, auth, "anna")).json()["id"] == callback_id
        before = datetime.now(UTC)
        answer = await _attempt(client, auth, callback_id, "anna", outcome)
        after = datetime.now(UTC)
        assert answer.status_code == 201, answer.text
        callback = answer.json()["callback"]
        assert (callback["status"], callback["attempt_count"]) == ("pending", number)
        due = datetime.fromisoformat(callback["due_at"])
        assert before + timedelta(minutes=wait) <= due <= after + timedelta(minutes=wait), outcome
        await set_callback(sessions, callback_id, due_at=datetime.now(UTC) - timedelta(minutes=1))

    await claim(client, auth, "anna")
    last = await _attempt(client, auth, callback_id, "anna", "voicemail")
    assert (last.json()["callback"]["status"], last.json()["callback"]["outcome"]) == (
        "failed",
        "attempts_exhausted",
    )


async def test_a_retry_time_moves_into_the_queues_own_hours(
    settings: CallbackSettings,
    client: AsyncClient,
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hours = plan_body(hours=("08:00", "16:00"))
    del hours["timezone"]
    await put_queue(client, admin, "stockholm", timezone="Europe/Stockholm", capacity=hours)
    # Tuesday 8.12.: Stockholm is open until 15:00 UTC, Helsinki only until 14:00 UTC.
    cases = [
        (datetime(2026, 12, 8, 14, 30, tzinfo=UTC), datetime(2026, 12, 8, 14, 45, tzinfo=UTC)),
        (datetime(2026, 12, 8, 14, 50, tzinfo=UTC), datetime(2026, 12, 9, 7, 0, tzinfo=UTC)),
    ]
    ids = await insert_callbacks(
        len(cases), queue="stockholm", due_at=cases[0][0] - timedelta(hours=1)
    )
    redis = create_redis(settings)
    queue = ArqNotificationQueue(redis)
    try:
        for callback_id, (now, expected) in zip(ids, cases, strict=True):
            async with sessions() as session:
                claimed = await agents.claim_next(
                    session=session, settings=settings, agent_id="anna", now=now
                )
                assert claimed is not None
                assert claimed.id == callback_id
                await commit(session)
            async with sessions() as session:
                result = await agents.record_attempt(
                    session=session,
                    settings=settings,
                    callback_id=callback_id,
                    agent_id="anna",
                    outcome=AttemptOutcome.NO_ANSWER,
                    note=None,
                    queue=queue,
                    now=now,
                )
                await commit(session)
            assert result.callback.due_at == expected, now
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_a_wrap_up_code_comes_from_the_queues_list(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    await put_queue(client, admin, "billing", wrap_up_codes=["billing_question", "complaint"])
    (billing,) = await insert_callbacks(1, queue="billing")
    (plain,) = await insert_callbacks(1, phone="+358501000001", priority=-1)

    assert (await claim(client, auth, "anna")).json()["id"] == billing
    foreign = await _attempt(client, auth, billing, "anna", "reached", wrap_up_code="sales_lead")
    assert is_problem(foreign, 422)
    assert foreign.json()["errors"][0]["loc"] == ["body", "wrap_up_code"]
    good = await _attempt(client, auth, billing, "anna", "reached", wrap_up_code="complaint")
    assert good.status_code == 201, good.text
    assert good.json()["attempt"]["wrap_up_code"] == "complaint"
    detail = (await client.get(f"/v1/callbacks/{billing}", headers=auth)).json()
    assert [a["wrap_up_code"] for a in detail["attempts"]] == ["complaint"]

    # The default queue lists no codes: none is accepted there.
    assert (await claim(client, auth, "anna")).json()["id"] == plain
    other = await _attempt(client, auth, plain, "anna", "reached", wrap_up_code="complaint")
    assert is_problem(other, 422)


# ----------------------------------------------------------------------------- PATCH


async def test_a_raised_priority_goes_first(
    client: AsyncClient, auth: dict[str, str], insert_callbacks: InsertCallbacks
) -> None:
    now = datetime.now(UTC)
    (older,) = await insert_callbacks(1, due_at=now - timedelta(minutes=10))
    (newer,) = await insert_callbacks(1, phone="+358501000001", due_at=now - timedelta(minutes=5))

    patched = await client.patch(f"/v1/callbacks/{newer}", json={"priority": 5}, headers=auth)

    assert patched.status_code == 200, patched.text
    assert patched.json()["priority"] == 5
    assert await _claims(client, auth, "anna") == [newer, older]


async def test_moving_a_waiting_callback_keeps_its_sla_clock(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await _two_queues(client, admin)
    await put_queue(client, admin, "sales", name="Myynti", numbers=[SALES_NUMBER], sla_minutes=30)
    first_contact = datetime.now(UTC) - timedelta(minutes=20)
    created = await _create(
        client, auth, queue="billing", first_contact_at=first_contact.isoformat()
    )

    moved = await client.patch(
        f"/v1/callbacks/{created['id']}", json={"queue": "sales"}, headers=auth
    )

    assert moved.status_code == 200, moved.text
    assert (moved.json()["queue"], moved.json()["status"]) == ("sales", "pending")
    assert _at(moved, "first_contact_at") == datetime.fromisoformat(created["first_contact_at"])
    assert _at(moved, "sla_deadline") == datetime.fromisoformat(created["sla_deadline"])
    listed = await client.get("/v1/callbacks", params={"queue": "sales"}, headers=auth)
    assert [c["id"] for c in listed.json()["items"]] == [created["id"]]
    unknown = await client.patch(
        f"/v1/callbacks/{created['id']}", json={"queue": "nosuch"}, headers=auth
    )
    assert is_problem(unknown, 422)


async def test_moving_a_booked_callback_gives_its_seat_back(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    plan = plan_body()
    del plan["timezone"]
    await _two_queues(client, admin, capacity=plan)
    start = _tomorrow_at(10)
    slot_id = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    booked = await _create(client, auth, queue="billing", preferred={"slot_id": slot_id})
    assert (booked["status"], booked["slot_id"]) == ("scheduled", slot_id)

    moved = await client.patch(
        f"/v1/callbacks/{booked['id']}", json={"queue": "sales"}, headers=auth
    )

    assert moved.status_code == 200, moved.text
    assert (moved.json()["queue"], moved.json()["status"], moved.json()["slot_id"]) == (
        "sales",
        "pending",
        None,
    )
    slots = await client.get(
        "/v1/slots",
        params={
            "queue": "billing",
            "from": start.isoformat(),
            "to": (start + timedelta(minutes=15)).isoformat(),
        },
        headers=auth,
    )
    assert [(s["id"], s["booked"]) for s in slots.json()["items"]] == [(slot_id, 0)]


async def test_a_move_is_refused_while_worked_or_when_the_number_is_open_there(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await _two_queues(client, admin)
    billing = await _create(client, auth, queue="billing")
    sales = await _create(client, auth, queue="sales")

    clash = await client.patch(
        f"/v1/callbacks/{billing['id']}", json={"queue": "sales"}, headers=auth
    )
    assert is_problem(clash, 409)

    await put_queue(client, admin, "support", name="Tuki")
    assert await _claims(client, auth, "anna") == [billing["id"], sales["id"]]
    worked = await client.patch(
        f"/v1/callbacks/{sales['id']}", json={"queue": "support"}, headers=auth
    )
    assert is_problem(worked, 409)
    detail = (await client.get(f"/v1/callbacks/{sales['id']}", headers=auth)).json()
    assert (detail["queue"], detail["status"]) == ("sales", "in_progress")


# ----------------------------------------------------------------------------- other ways in


async def test_an_answered_call_completes_only_its_own_queues_callback(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await _two_queues(client, admin)
    billing = await _create(client, auth, queue="billing")
    sales = await _create(client, auth, queue="sales")

    def answered(request_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "phone": MAIJA,
            "occurred_at": datetime.now(UTC).isoformat(),
            **fields,
        }

    by_key = await client.post(
        "/v1/answered-calls", json=answered("ans-1", queue="billing"), headers=auth
    )
    assert by_key.json() == {"status": "completed", "callback_id": billing["id"]}
    sales_now = (await client.get(f"/v1/callbacks/{sales['id']}", headers=auth)).json()
    assert sales_now["status"] == "pending"

    elsewhere = await client.post("/v1/answered-calls", json=answered("ans-2"), headers=auth)
    assert elsewhere.json() == {"status": "no_open_callback", "callback_id": None}
    by_number = await client.post(
        "/v1/answered-calls", json=answered("ans-3", dialed=SALES_NUMBER), headers=auth
    )
    assert by_number.json() == {"status": "completed", "callback_id": sales["id"]}
    for callback in (billing, sales):
        detail = (await client.get(f"/v1/callbacks/{callback['id']}", headers=auth)).json()
        assert (detail["status"], detail["outcome"]) == ("completed", "reached_inbound")


async def test_a_reach_by_the_agent_who_rescheduled_is_same_agent(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
) -> None:
    kept, handed_on = await insert_callbacks(2)
    at = _tomorrow_at(10).isoformat()
    for callback_id in (kept, handed_on):
        assert (await claim(client, auth, "anna")).json()["id"] == callback_id
        answer = await _attempt(client, auth, callback_id, "anna", "rescheduled", next={"at": at})
        assert answer.status_code == 201, answer.text

    for callback_id, agent in ((kept, "anna"), (handed_on, "ben")):
        await set_callback(sessions, callback_id, due_at=datetime.now(UTC) - timedelta(minutes=1))
        await set_callback(sessions, callback_id, priority=1)
        assert (await claim(client, auth, agent)).json()["id"] == callback_id
        reached = await _attempt(client, auth, callback_id, agent, "reached")
        assert reached.status_code == 201, reached.text

    completed = {
        row.payload["subject"]["id"]: row.payload["data"]
        for row in await read_outbox()
        if row.payload["type"] == "callback_completed"
    }
    assert completed[kept]["same_agent"] is True
    assert completed[handed_on]["same_agent"] is False
