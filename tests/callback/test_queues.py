"""Managing queues (DESIGN §9): their rules, `default`, and slots and seats of their own."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient

from services.callback.templates import window_phrase
from tests.callback.conftest import ConfirmOwed, ReadNotificationsFn, RunWorker
from tests.callback.helpers import (
    callback_body,
    is_problem,
    plan_body,
    put_queue,
    queue_body,
)

HELSINKI = ZoneInfo("Europe/Helsinki")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
BILLING_NUMBER = "+358923123456"


def _tomorrow(zone: ZoneInfo, hour: int = 0) -> datetime:
    """`hour`:00 tomorrow on `zone`'s clock, as an aware UTC instant."""
    day = datetime.now(zone).date() + timedelta(days=1)
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


async def _slots(
    client: AsyncClient,
    auth: dict[str, str],
    start: datetime,
    end: datetime,
    queue: str | None = None,
) -> dict[str, Any]:
    params = {"from": start.isoformat(), "to": end.isoformat()}
    if queue is not None:
        params["queue"] = queue
    response = await client.get("/v1/slots", params=params, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _by_id(slots: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {slot["id"]: slot for slot in slots["items"]}


async def test_put_creates_then_replaces_and_get_reads_it_back(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    body = queue_body(
        numbers=[BILLING_NUMBER],
        languages=["fi", "sv"],
        timezone="Europe/Helsinki",
        sla_minutes=90,
        caller_id=BILLING_NUMBER,
        retry={"no_answer": [15, 120], "busy": [5], "max_tries": 4},
        wrap_up_codes=["billing_question", "complaint"],
        language_wait_minutes=10,
    )

    created = await client.put("/v1/queues/billing", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["key"] == "billing"
    assert created.json()["numbers"] == [BILLING_NUMBER]
    assert created.json()["languages"] == ["fi", "sv"]
    assert created.json()["retry"]["busy"] == [5]

    replaced = await client.put(
        "/v1/queues/billing", json=queue_body("Laskutus ja maksut"), headers=admin
    )
    assert replaced.status_code == 200, replaced.text
    got = await client.get("/v1/queues/billing", headers=auth)
    assert got.status_code == 200
    # A replacement, not a merge: what the new body leaves out is gone.
    assert got.json()["name"] == "Laskutus ja maksut"
    assert got.json()["numbers"] == []
    assert got.json()["wrap_up_codes"] == []
    listed = await client.get("/v1/queues", headers=auth)
    assert listed.status_code == 200
    assert [q["key"] for q in listed.json()] == ["billing", "default"]

    # Only an admin manages queues; an unknown one is 404, a malformed key 422.
    writer = await client.put("/v1/queues/sales", json=queue_body(), headers=auth)
    assert is_problem(writer, 403)
    assert is_problem(await client.get("/v1/queues/nosuch", headers=auth), 404)
    bad_key = await client.put("/v1/queues/Sales!", json=queue_body(), headers=admin)
    assert is_problem(bad_key, 422)
    nameless = await client.put("/v1/queues/sales", json={}, headers=admin)
    assert is_problem(nameless, 422)


async def test_the_default_queue_always_exists(client: AsyncClient, auth: dict[str, str]) -> None:
    listed = await client.get("/v1/queues", headers=auth)
    assert listed.status_code == 200
    assert [q["key"] for q in listed.json()] == ["default"]
    default = await client.get("/v1/queues/default", headers=auth)
    assert default.status_code == 200
    assert default.json()["effective_timezone"] == "Europe/Helsinki"


async def test_numbers_are_e164_and_each_belongs_to_one_queue(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    national = await client.put(
        "/v1/queues/billing", json=queue_body(numbers=["09 2312 3456"]), headers=admin
    )
    assert is_problem(national, 422)
    assert national.json()["errors"][0]["loc"][:2] == ["body", "numbers"]
    junk = await client.put("/v1/queues/billing", json=queue_body(numbers=["+1"]), headers=admin)
    assert is_problem(junk, 422)

    await put_queue(client, admin, "billing", numbers=[BILLING_NUMBER])
    taken = await client.put(
        "/v1/queues/sales", json=queue_body("Myynti", numbers=[BILLING_NUMBER]), headers=admin
    )
    assert is_problem(taken, 422)
    assert "billing" in taken.json()["errors"][0]["msg"]
    assert is_problem(await client.get("/v1/queues/sales", headers=auth), 404)
    # The queue's own number is no conflict when it is put again.
    again = await client.put(
        "/v1/queues/billing", json=queue_body(numbers=[BILLING_NUMBER]), headers=admin
    )
    assert again.status_code == 200, again.text


async def test_an_unknown_language_is_422(client: AsyncClient, admin: dict[str, str]) -> None:
    response = await client.put(
        "/v1/queues/billing", json=queue_body(languages=["fi", "de"]), headers=admin
    )
    assert is_problem(response, 422)


async def test_the_queues_zone_governs_its_capacity_plan(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    other_zone = await client.put(
        "/v1/queues/stockholm",
        json=queue_body("Tukholma", timezone="Europe/Stockholm", capacity=plan_body()),
        headers=admin,
    )
    assert is_problem(other_zone, 422)
    assert other_zone.json()["errors"][0]["loc"] == ["body", "capacity", "timezone"]

    plan = plan_body()
    del plan["timezone"]
    created = await client.put(
        "/v1/queues/stockholm",
        json=queue_body("Tukholma", timezone="Europe/Stockholm", capacity=plan),
        headers=admin,
    )
    assert created.status_code == 201, created.text
    got = (await client.get("/v1/queues/stockholm", headers=auth)).json()
    assert got["capacity"]["timezone"] == "Europe/Stockholm"
    assert got["effective_timezone"] == "Europe/Stockholm"

    same = await client.put(
        "/v1/queues/stockholm",
        json=queue_body(
            "Tukholma",
            timezone="Europe/Stockholm",
            capacity=plan_body(timezone="Europe/Stockholm"),
        ),
        headers=admin,
    )
    assert same.status_code == 200, same.text


async def test_delete_refuses_default_and_a_queue_with_open_callbacks(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    assert is_problem(await client.delete("/v1/queues/default", headers=admin), 409)
    await put_queue(client, admin, "billing", numbers=[BILLING_NUMBER])
    await put_queue(client, admin, "empty")
    created = await client.post("/v1/callbacks", json=callback_body(queue="billing"), headers=auth)
    assert created.status_code == 201, created.text

    busy = await client.delete("/v1/queues/billing", headers=admin)
    assert is_problem(busy, 409)
    assert (await client.get("/v1/queues/billing", headers=auth)).status_code == 200

    empty = await client.delete("/v1/queues/empty", headers=admin)
    assert empty.status_code == 204
    assert (await client.get("/v1/queues/empty", headers=auth)).status_code == 404

    cancelled = await client.post(
        f"/v1/callbacks/{created.json()['id']}/cancel", json={"notify": False}, headers=auth
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (await client.delete("/v1/queues/billing", headers=admin)).status_code == 204
    # Its numbers went with it.
    await put_queue(client, admin, "sales", numbers=[BILLING_NUMBER])
    listed = (await client.get("/v1/queues", headers=auth)).json()
    assert [q["key"] for q in listed] == ["default", "sales"]


async def test_v1_capacity_is_the_default_queues_plan(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    plan = plan_body(hours=("08:00", "10:00"), timezone="Europe/Stockholm")
    put = await client.put("/v1/capacity", json=plan, headers=admin)
    assert put.status_code == 200, put.text

    default = (await client.get("/v1/queues/default", headers=auth)).json()
    assert default["capacity"]["business_hours"] == plan["business_hours"]
    assert default["capacity"]["timezone"] == "Europe/Stockholm"
    assert default["effective_timezone"] == "Europe/Stockholm"

    # Another queue's plan is not the default's; the default's own replacement is.
    await put_queue(client, admin, "sales", capacity=plan_body(hours=("12:00", "13:00")))
    assert (await client.get("/v1/capacity", headers=auth)).json()["business_hours"] == plan[
        "business_hours"
    ]
    replacement = plan_body(hours=("09:00", "11:00"))
    del replacement["timezone"]
    await put_queue(client, admin, "default", name="Default", capacity=replacement)
    got = (await client.get("/v1/capacity", headers=auth)).json()
    assert got["business_hours"] == replacement["business_hours"]
    assert got["timezone"] == "Europe/Helsinki"

    start = _tomorrow(HELSINKI)
    slots = await _slots(client, auth, start, start + timedelta(days=1))
    assert slots["timezone"] == "Europe/Helsinki"
    assert slots["items"][0]["start"] == _z(_tomorrow(HELSINKI, 9))
    assert len(slots["items"]) == 8


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_slots_of_a_queue_are_laid_out_in_its_zone(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    hours = plan_body(hours=("08:00", "09:00"), agents=2)
    del hours["timezone"]
    await put_queue(client, admin, "stockholm", timezone="Europe/Stockholm", capacity=hours)
    await client.put("/v1/capacity", json=plan_body(hours=("08:00", "09:00")), headers=admin)
    start = _tomorrow(STOCKHOLM) - timedelta(hours=2)
    end = start + timedelta(days=1)

    slots = await _slots(client, auth, start, end, queue="stockholm")

    assert slots["timezone"] == "Europe/Stockholm"
    assert [s["start"] for s in slots["items"]] == [
        _z(_tomorrow(STOCKHOLM, 8) + timedelta(minutes=m)) for m in (0, 15, 30, 45)
    ]
    first = slots["items"][0]
    assert datetime.fromisoformat(first["local_start"]).hour == 8
    assert datetime.fromisoformat(first["local_start"]).utcoffset() == (
        _tomorrow(STOCKHOLM, 8).astimezone(STOCKHOLM).utcoffset()
    )
    assert (first["capacity"], first["booked"], first["available"]) == (2, 0, 2)
    # The default queue's 08:00 is Helsinki's, an hour earlier: the first one in the window
    # (just after midnight in Helsinki that is already today's).
    default = await _slots(client, auth, start, end)
    helsinki_eight = next(
        moment
        for days in (-1, 0)
        if (moment := _tomorrow(HELSINKI, 8) + timedelta(days=days)) >= start
    )
    assert default["items"][0]["start"] == _z(helsinki_eight)
    assert is_problem(
        await client.get(
            "/v1/slots",
            params={"from": start.isoformat(), "to": end.isoformat(), "queue": "nosuch"},
            headers=auth,
        ),
        404,
    )


async def test_seats_are_per_queue(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await put_queue(client, admin, "billing", capacity=plan_body())
    await put_queue(client, admin, "sales", capacity=plan_body())
    start = _tomorrow(HELSINKI, 10)
    slot_id = _z(start)

    booked = await client.post(
        "/v1/callbacks",
        json=callback_body(queue="billing", preferred={"slot_id": slot_id}),
        headers=auth,
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["status"] == "scheduled"

    end = start + timedelta(minutes=15)
    billing = _by_id(await _slots(client, auth, start, end, queue="billing"))[slot_id]
    sales = _by_id(await _slots(client, auth, start, end, queue="sales"))[slot_id]
    assert (billing["booked"], billing["available"]) == (1, 0)
    assert (sales["booked"], sales["available"]) == (0, 1)

    # The other queue's same instant still takes a callback; the full one does not.
    other = await client.post(
        "/v1/callbacks",
        json=callback_body(queue="sales", phone="050 765 4321", preferred={"slot_id": slot_id}),
        headers=auth,
    )
    assert other.json()["status"] == "scheduled", other.text
    full = await client.post(
        "/v1/callbacks",
        json=callback_body(queue="billing", phone="044 111 2222", preferred={"slot_id": slot_id}),
        headers=auth,
    )
    assert (full.json()["status"], full.json()["flag"]) == ("pending", "requested_slot_full")


async def test_asap_is_booked_into_its_own_queues_slots(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    run_worker: RunWorker,
    confirm_owed: ConfirmOwed,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    half_hours = plan_body(slot_minutes=30)
    del half_hours["timezone"]
    await put_queue(client, admin, "sales", capacity=half_hours)

    created = await client.post("/v1/callbacks", json=callback_body(queue="sales"), headers=auth)
    assert created.status_code == 201, created.text
    # Booked first, then the worker: a half-hour slot may start more than a reminder's lead
    # ahead, and the burst worker would wait for that reminder's deferred job.
    await confirm_owed()
    await run_worker()

    detail = (await client.get(f"/v1/callbacks/{created.json()['id']}", headers=auth)).json()
    assert (detail["queue"], detail["status"]) == ("sales", "scheduled")
    start = datetime.fromisoformat(detail["slot_start"])
    assert datetime.fromisoformat(detail["slot_end"]) - start == timedelta(minutes=30)
    window = (start, start + timedelta(minutes=30))
    sales = _by_id(await _slots(client, auth, *window, queue="sales"))
    assert sales[detail["slot_id"]]["booked"] == 1
    default = await _slots(client, auth, *window)
    assert [s["booked"] for s in default["items"]] == [0, 0]


async def test_the_confirmation_names_the_window_on_the_queues_clock(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    run_worker: RunWorker,
    read_notifications: ReadNotificationsFn,
) -> None:
    plan = plan_body()
    del plan["timezone"]
    await put_queue(client, admin, "stockholm", timezone="Europe/Stockholm", capacity=plan)

    created = await client.post(
        "/v1/callbacks", json=callback_body(queue="stockholm"), headers=auth
    )
    now = datetime.now(UTC)
    await run_worker()

    detail = (await client.get(f"/v1/callbacks/{created.json()['id']}", headers=auth)).json()
    assert detail["status"] == "scheduled", detail
    start = datetime.fromisoformat(detail["slot_start"])
    end = datetime.fromisoformat(detail["slot_end"])
    sms = next(
        n
        for n in await read_notifications(detail["id"])
        if (n.kind, n.channel) == ("confirmation", "sms")
    )
    local = window_phrase("fi", start=start, end=end, now=now, tz=STOCKHOLM)
    helsinki = window_phrase("fi", start=start, end=end, now=now, tz=HELSINKI)
    assert local in sms.body
    assert helsinki not in sms.body


async def test_a_confirmation_sms_goes_at_once_even_in_the_queues_quiet_hours(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    run_worker: RunWorker,
    confirm_owed: ConfirmOwed,
    read_notifications: ReadNotificationsFn,
) -> None:
    # Quiet from an hour ago to two hours ahead on the queue's clock: now is inside them.
    local = datetime.now(STOCKHOLM)
    start = (local - timedelta(hours=1)).strftime("%H:00")
    end_local = (local + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    quiet = {"start": start, "end": end_local.strftime("%H:00")}
    await put_queue(client, admin, "night", timezone="Europe/Stockholm", sms_quiet_hours=quiet)

    created = await client.post("/v1/callbacks", json=callback_body(queue="night"), headers=auth)
    assert created.status_code == 201, created.text
    # A confirmation answers the customer's own contact (§13); what waits is in
    # tests/callback/test_quiet_hours.py.
    await confirm_owed()
    await run_worker()

    sent = {n.channel: n for n in await read_notifications(created.json()["id"])}
    assert sent["email"].status == "sent"
    assert sent["sms"].status == "sent"
