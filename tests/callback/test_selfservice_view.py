"""The JSON self-service view, as an API client reads it (issue #23, items 4 and 5).

It lists the times the customer may rebook to, the same ones the page offers, so a client
needs no staff key to rebook; and its `when` says what stands once no call is ahead, instead
of promising a time that will not come.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app
from services.callback.selfservice_actions import DAYS_AHEAD
from services.callback.settings import CallbackSettings
from tests.callback.helpers import claim, plan_body, put_agent, set_callback
from tests.callback.test_selfservice_page import BROWSER, new_callback, read
from tests.conftest import serve_asgi

JSON = {"Accept": "application/json"}
# A clock time as any of our languages writes one: "9.15", "21.03".
CLOCK = re.compile(r"\b\d{1,2}\.\d{2}\b")

# What `when` says in each language once no time is ahead, per status.
STANDS: dict[str, dict[str, str]] = {
    "fi": {
        "in_progress": "soitamme sinulle nyt",
        "completed": "hoidettu: tavoitimme sinut",
        "failed": "emme tavoittaneet sinua emmekä soita enää",
        "cancelled": "peruttu: emme soita sinulle",
        "expired": "vanhentunut: emme soita sinulle",
    },
    "sv": {
        "in_progress": "vi ringer dig nu",
        "completed": "klart: vi nådde dig",
        "failed": "vi nådde dig inte och ringer inte igen",
        "cancelled": "avbokad: vi ringer inte",
        "expired": "utgången: vi ringer inte",
    },
    "en": {
        "in_progress": "we are calling you now",
        "completed": "done: we reached you",
        "failed": "we could not reach you and will not call again",
        "cancelled": "cancelled: we will not call you",
        "expired": "expired: we will not call you",
    },
    "et": {
        "in_progress": "helistame teile praegu",
        "completed": "täidetud: saime teiega ühendust",
        "failed": "me ei saanud teid kätte ega helista enam",
        "cancelled": "tühistatud: me ei helista teile",
        "expired": "aegunud: me ei helista teile",
    },
}
# The waiting phrase each language starts a promise with ("as soon as possible, ...").
ASAP = {
    "fi": "mahdollisimman pian",
    "sv": "så snart som möjligt",
    "en": "as soon as possible",
    "et": "esimesel võimalusel",
}


async def view(client: AsyncClient, token: str) -> dict[str, Any]:
    response = await client.get(f"/v1/self/{token}", headers=JSON)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    seen: dict[str, Any] = response.json()
    return seen


# ----------------------------------------------------------------------------- free slots


async def test_the_json_view_lists_free_slots_that_rebook(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str], settings: CallbackSettings
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    _, token = await new_callback(client, auth, settings, language="en")

    before = datetime.now().astimezone()
    seen = await view(client, token)

    assert seen["can_rebook"] is True
    free = seen["free_slots"]
    assert free, seen
    assert set(free[0]) == {"id", "start", "end", "label"}
    # The hidden fields the page reads stay ours.
    assert "queue" not in seen
    assert "timezone" not in seen
    starts = [datetime.fromisoformat(slot["start"]) for slot in free]
    assert starts == sorted(starts)
    assert all(before < start < before + timedelta(days=DAYS_AHEAD) for start in starts)
    for slot in free:
        assert datetime.fromisoformat(slot["end"]) > datetime.fromisoformat(slot["start"])
        assert " between " in slot["label"], slot

    # Any of them books, by its id, through the link alone: no staff key.
    chosen = free[3]
    rebooked = await client.post(
        f"/v1/self/{token}", json={"action": "rebook", "slot_id": chosen["id"]}
    )
    assert rebooked.status_code == 200, rebooked.text
    after = rebooked.json()
    assert (after["status"], after["slot_id"]) == ("scheduled", chosen["id"])
    assert after["when"] == chosen["label"]
    # The time now held is not offered again; the others still are.
    offered = {slot["id"] for slot in after["free_slots"]}
    assert chosen["id"] not in offered
    assert {free[2]["id"], free[4]["id"]} <= offered


async def test_a_full_slot_is_not_offered(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str], settings: CallbackSettings
) -> None:
    await client.put("/v1/capacity", json=plan_body(agents=1, per_agent=1), headers=admin)
    _, mine = await new_callback(client, auth, settings, language="en")
    _, theirs = await new_callback(client, auth, settings, phone="050 999 8888")
    taken = (await view(client, mine))["free_slots"][2]["id"]

    booked = await client.post(f"/v1/self/{theirs}", json={"action": "rebook", "slot_id": taken})
    assert booked.status_code == 200, booked.text

    assert taken not in {slot["id"] for slot in (await view(client, mine))["free_slots"]}


async def test_the_page_and_the_json_view_offer_the_same_slots(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str], settings: CallbackSettings
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    _, token = await new_callback(client, auth, settings, language="en")
    # Hold one, so both must leave the same one out.
    first = (await view(client, token))["free_slots"][1]["id"]
    held = await client.post(f"/v1/self/{token}", json={"action": "rebook", "slot_id": first})
    assert held.status_code == 200, held.text

    page = read(await client.get(f"/v1/self/{token}", headers=BROWSER))
    seen = await view(client, token)

    free = seen["free_slots"]
    assert [radio.value for radio in page.radios] == [slot["id"] for slot in free]
    assert first not in {radio.value for radio in page.radios}
    # The page writes each as a clock range under its day; the view's label names the same.
    for radio, slot in zip(page.radios, free, strict=True):
        start, end = radio.label.split("\u2013")
        assert slot["label"].endswith(f"between {start} and {end}"), (radio, slot)


async def test_nothing_is_offered_when_the_callback_cannot_be_rebooked(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
) -> None:
    # No capacity plan: nothing to book into.
    _, unplanned = await new_callback(client, auth, settings, language="en")
    seen = await view(client, unplanned)
    assert (seen["can_rebook"], seen["free_slots"]) == (False, [])

    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    assert (await view(client, unplanned))["free_slots"]

    # Cancelled: nothing left to change.
    cancelled = await client.post(f"/v1/self/{unplanned}", json={"action": "cancel"})
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["can_rebook"], cancelled.json()["free_slots"]) == (False, [])
    assert (await view(client, unplanned))["free_slots"] == []

    # The day's rebooks used up (`ceilings`): the page asks for a phone call, the view lists none.
    capped = settings.model_copy(update={"self_service_rebooks_per_callback_per_day": 0})
    async for other in serve_asgi(create_app(capped)):
        _, token = await new_callback(other, auth, capped, phone="050 999 8888")
        seen = await view(other, token)
        assert (seen["can_cancel"], seen["rebooks_left_today"]) == (True, 0)
        assert (seen["can_rebook"], seen["free_slots"]) == (False, [])


# ----------------------------------------------------------------------------- `when`


@pytest.mark.parametrize("language", ["fi", "sv", "en", "et"])
async def test_after_a_cancel_when_promises_no_time(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    language: str,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    _, token = await new_callback(client, auth, settings, language=language)
    waiting = await view(client, token)
    assert waiting["when"].startswith(ASAP[language])
    assert CLOCK.search(waiting["when"])

    cancelled = await client.post(f"/v1/self/{token}", json={"action": "cancel"})

    assert cancelled.status_code == 200, cancelled.text
    for seen in (cancelled.json(), await view(client, token)):
        assert (seen["status"], seen["language"]) == ("cancelled", language)
        assert seen["when"] == STANDS[language]["cancelled"]
        assert not CLOCK.search(seen["when"])
        assert ASAP[language] not in seen["when"]


@pytest.mark.parametrize("language", ["fi", "sv", "en", "et"])
async def test_each_status_past_waiting_says_what_stands(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    language: str,
) -> None:
    await put_agent(client, admin, "anna", queues=["default"])
    callback_id, token = await new_callback(client, auth, settings, language=language)
    said: dict[str, str] = {}

    claimed = await claim(client, auth, "anna")
    assert claimed.status_code == 200, claimed.text
    said["in_progress"] = (await view(client, token))["when"]
    reached = await client.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": "anna", "outcome": "reached"},
        headers=auth,
    )
    assert reached.status_code == 201, reached.text
    said["completed"] = (await view(client, token))["when"]
    # The other ends, as the retries running out, the sweeper and a cancel leave it.
    for status in ("failed", "expired", "cancelled"):
        await set_callback(sessions, callback_id, status=status)
        seen = await view(client, token)
        assert (seen["status"], seen["can_cancel"], seen["free_slots"]) == (status, False, [])
        said[status] = seen["when"]

    assert said == STANDS[language]
    assert len(set(said.values())) == len(said)  # each its own sentence
    for text in said.values():
        assert not CLOCK.search(text)
        assert ASAP[language] not in text


async def test_the_json_view_speaks_the_language_asked_for(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    _, token = await new_callback(client, auth, settings, language="fi")

    own = (await client.get(f"/v1/self/{token}")).json()
    swedish = (await client.get(f"/v1/self/{token}", params={"lang": "sv"})).json()

    assert (own["language"], swedish["language"]) == ("fi", "sv")
    assert "mahdollisimman pian" in own["when"]
    assert "så snart som möjligt" in swedish["when"]
