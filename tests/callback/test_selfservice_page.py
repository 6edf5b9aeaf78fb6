"""The self-service page: what a customer who taps the link in their SMS sees and can do."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from httpx import AsyncClient, Response
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app as create_callback
from services.callback.models import Callback
from services.callback.selfservice import TOKEN_SALT, create_token
from services.callback.selfservice_page import accepted_language, prefers_html
from services.callback.settings import CallbackSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from tests.callback.helpers import callback_body, plan_body
from tests.conftest import serve_asgi
from tests.support.live import LiveServer

# What a desktop or phone browser sends when the customer opens the link.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
FORM = {**BROWSER, "Content-Type": "application/x-www-form-urlencoded"}


# ----------------------------------------------------------------------------- reading a page


@dataclass
class Radio:
    value: str
    label: str = ""


@dataclass
class Form:
    method: str
    action: str
    hidden: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


@dataclass
class Page:
    """A page as a person (and a screen reader) meets it: texts, headings, controls."""

    lang: str = ""
    h1: str = ""
    h2: list[str] = field(default_factory=list)
    legends: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    radios: list[Radio] = field(default_factory=list)
    forms: list[Form] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    stylesheet: str = ""
    style_attributes: int = 0
    scripts: int = 0
    viewport: bool = False
    text: str = ""

    def form_with(self, button: str) -> Form:
        return next(form for form in self.forms if button in form.buttons)

    def buttons(self) -> list[str]:
        return [button for form in self.forms for button in form.buttons]


class _Reader(HTMLParser):
    _CAPTURE = ("h1", "h2", "legend", "label", "button", "a", "alert", "status")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._open: list[tuple[str, list[str], dict[str, str]]] = []
        self._texts: list[str] = []
        self._radio: Radio | None = None
        self._in = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self._in = tag
        if "style" in a:
            self.page.style_attributes += 1
        if tag == "html":
            self.page.lang = a.get("lang", "")
        elif tag == "script":
            self.page.scripts += 1
        elif tag == "meta" and a.get("name") == "viewport":
            self.page.viewport = True
        elif tag == "form":
            self.page.forms.append(Form(a.get("method", "get").lower(), a.get("action", "")))
        elif tag == "input" and a.get("type") == "hidden" and self.page.forms:
            self.page.forms[-1].hidden[a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("type") == "radio":
            self._radio = Radio(a["value"])
            self.page.radios.append(self._radio)
        kind = a.get("role") if a.get("role") in ("alert", "status") else tag
        if kind in self._CAPTURE:
            self._open.append((kind, [], a))

    def handle_endtag(self, tag: str) -> None:
        self._in = ""
        if not self._open or (self._open[-1][0] != tag and tag != "div"):
            return
        kind, parts, attrs = self._open.pop()
        text = " ".join("".join(parts).split())
        if kind == "h1":
            self.page.h1 = text
        elif kind == "h2":
            self.page.h2.append(text)
        elif kind == "legend":
            self.page.legends.append(text)
        elif kind == "label" and self._radio is not None:
            self._radio.label, self._radio = text, None
        elif kind == "button" and self.page.forms:
            self.page.forms[-1].buttons.append(text)
        elif kind == "a":
            self.page.links[text] = attrs.get("href", "")
        elif kind == "alert":
            self.page.alerts.append(text)
        elif kind == "status":
            self.page.statuses.append(text)

    def handle_data(self, data: str) -> None:
        for _, parts, _ in self._open:
            parts.append(data)
        if self._in in ("style", "title"):
            if self._in == "style":
                self.page.stylesheet += data
        else:
            self._texts.append(data)


def read(response: Response) -> Page:
    assert response.headers["content-type"].startswith("text/html"), response.text[:300]
    reader = _Reader()
    reader.feed(response.text)
    reader.page.text = " ".join(" ".join(reader._texts).split())
    return reader.page


# ----------------------------------------------------------------------------- helpers


async def new_callback(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings, **body: Any
) -> tuple[str, str]:
    """A callback of ours and the token of its self-service link."""
    response = await client.post("/v1/callbacks", json=callback_body(**body), headers=auth)
    assert response.status_code == 201, response.text
    callback_id: str = response.json()["id"]
    return callback_id, create_token(settings, callback_id)


async def stored(sessions: async_sessionmaker[AsyncSession], callback_id: str) -> Callback:
    async with sessions() as session:
        callback = await session.get(Callback, callback_id)
        assert callback is not None
        return callback


def expired_token(settings: CallbackSettings, callback_id: str) -> str:
    secret = settings.self_service_secret
    assert secret is not None

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - (settings.self_service_max_age_hours + 1) * 3600

    return URLSafeTimedSerializer(secret.get_secret_value(), salt=TOKEN_SALT, signer=LongAgo).dumps(
        {"cb": callback_id}
    )


def tampered(token: str) -> str:
    return token[:-2] + ("AA" if token[-2:] != "AA" else "BB")


def assert_page_headers(response: Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


# ----------------------------------------------------------------------------- negotiation


def test_browsers_get_html_and_api_clients_json() -> None:
    assert prefers_html(BROWSER["Accept"])
    assert prefers_html("text/html")
    for api in (None, "", "*/*", "application/json", "application/json, text/html"):
        assert not prefers_html(api), api
    assert not prefers_html("text/html;q=0.5, application/json")
    assert accepted_language("sv-FI,sv;q=0.9,en;q=0.8", "fi") == "sv"
    assert accepted_language("de-DE,de;q=0.9", "fi") == "fi"
    assert accepted_language("de, en;q=0.3", "fi") == "en"


async def test_api_clients_still_get_json(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    _, token = await new_callback(client, auth, settings)
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        response = await client.get(f"/v1/self/{token}", headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json()["status"] == "pending"
    bad = await client.get(f"/v1/self/{tampered(token)}", headers={"Accept": "application/json"})
    assert bad.status_code == 404
    assert bad.headers["content-type"] == "application/problem+json"


# ----------------------------------------------------------------------------- viewing


@pytest.mark.parametrize(
    ("lang", "heading", "when"),
    [
        ("fi", "Soittopyyntösi on jonossa", "Soitamme sinulle mahdollisimman pian"),
        ("sv", "Din återuppringning står i kö", "Vi ringer dig så snart som möjligt"),
        ("en", "Your callback is in the queue", "We will call you as soon as possible"),
        ("et", "Teie tagasihelistamise soov on järjekorras", "Helistame teile esimesel võimalusel"),
    ],
)
async def test_the_page_says_where_the_callback_stands_in_each_language(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    lang: str,
    heading: str,
    when: str,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    _, token = await new_callback(client, auth, settings, language="sv" if lang != "sv" else "fi")

    response = await client.get(f"/v1/self/{token}?lang={lang}", headers=BROWSER)

    assert response.status_code == 200
    assert response.headers["content-language"] == lang
    assert_page_headers(response)
    page = read(response)
    assert page.lang == lang
    assert page.h1 == heading
    assert when in page.text
    assert page.viewport
    assert page.scripts == 0
    # Every language is one tap away, the current one marked.
    assert {"Suomeksi", "På svenska", "In English", "Eesti keeles"} <= set(page.links)
    assert f'href="?lang={lang}" lang="{lang}" hreflang="{lang}" aria-current="true"' in (
        response.text
    )


async def test_by_default_the_page_speaks_the_callbacks_language(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    _, token = await new_callback(client, auth, settings, language="sv")
    page = read(await client.get(f"/v1/self/{token}", headers={**BROWSER, "Accept-Language": "en"}))
    assert page.lang == "sv"
    assert page.h1 == "Din återuppringning står i kö"
    assert "Avboka återuppringningen" in page.buttons()


async def test_an_estonian_customer_gets_the_page_and_its_times_in_estonian(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    _, token = await new_callback(client, auth, settings, language="et")

    response = await client.get(f"/v1/self/{token}", headers=BROWSER)

    assert response.headers["content-language"] == "et"
    page = read(response)
    assert (page.lang, page.h1) == ("et", "Teie tagasihelistamise soov on järjekorras")
    assert "Valige teine aeg" in page.h2
    assert "Tühista tagasihelistamine" in page.buttons()
    # Days as CLDR et abbreviates them ("T, 24.11"), clock times with the period ("14.30").
    assert re.fullmatch(
        r"(Täna|Homme) \([ETKNRLP], \d{1,2}\.\d{1,2}\)|[ETKNRLP], \d{1,2}\.\d{1,2}", page.legends[0]
    )
    assert re.fullmatch(r"\d{1,2}\.\d{2}\u2013\d{1,2}\.\d{2}", page.radios[0].label)
    assert 'lang="et" hreflang="et" aria-current="true">Eesti keeles</a>' in response.text


async def test_the_pages_stylesheet_is_the_only_thing_its_policy_allows(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    _, token = await new_callback(client, auth, settings)
    for response in (
        await client.get(f"/v1/self/{token}", headers=BROWSER),
        await client.get(f"/v1/self/{tampered(token)}", headers=BROWSER),
    ):
        page = read(response)
        csp = response.headers["content-security-policy"]
        # A browser applies the stylesheet only if its exact text hashes to the allowed value.
        digest = base64.b64encode(hashlib.sha256(page.stylesheet.encode()).digest()).decode()
        assert "{" in page.stylesheet
        assert f"style-src 'sha256-{digest}';" in csp
        assert "script-src" not in csp
        assert "unsafe-inline" not in csp
        assert page.style_attributes == 0  # inline style="" would be blocked


# ----------------------------------------------------------------------------- cancelling


async def test_cancel_asks_first_then_cancels_and_says_so(
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    callback_id, token = await new_callback(client, auth, settings, language="en")
    page = read(await client.get(f"/v1/self/{token}", headers=BROWSER))
    assert page.h1 == "Your callback is in the queue"
    ask = page.form_with("Cancel callback")
    assert (ask.method, ask.action) == ("get", f"/v1/self/{token}")

    # The first button only asks: nothing is cancelled yet.
    confirm = await client.get(ask.action, params=ask.hidden, headers=BROWSER)
    assert confirm.status_code == 200
    confirm_page = read(confirm)
    assert "Do you want to cancel your callback?" in confirm_page.h2
    assert confirm_page.links["No, keep my callback"] == f"/v1/self/{token}"
    assert (await stored(sessions, callback_id)).status == "pending"

    yes = confirm_page.form_with("Yes, cancel my callback")
    assert yes.method == "post"
    done = await client.post(yes.action, data=yes.hidden, headers=BROWSER)

    assert done.status_code == 303
    assert done.headers["location"] == f"/v1/self/{token}?done=cancelled"
    assert done.headers["cache-control"] == "no-store"
    assert (await stored(sessions, callback_id)).status == "cancelled"
    after = await client.get(done.headers["location"], headers=BROWSER)
    assert after.status_code == 200
    after_page = read(after)
    assert after_page.h1 == "Your callback is cancelled"
    assert after_page.statuses == ["Your callback has been cancelled. We will not call you."]
    assert after_page.forms == []  # nothing left to change


async def test_a_closed_callback_is_explained_not_changed(
    client: AsyncClient,
    auth: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    callback_id, token = await new_callback(client, auth, settings, language="en")
    await client.post(f"/v1/callbacks/{callback_id}/cancel", headers=auth)

    again = await client.post(f"/v1/self/{token}", data={"action": "cancel"}, headers=FORM)

    assert again.status_code == 409
    assert_page_headers(again)
    page = read(again)
    assert page.h1 == "Your callback is cancelled"
    assert page.alerts == ["This callback can no longer be changed."]
    assert "Cancel callback" not in page.buttons()
    # `?done=cancelled` on a callback nobody cancelled here says nothing it should not.
    other_id, other = await new_callback(client, auth, settings, phone="050 999 8888")
    unrelated = await client.get(f"/v1/self/{other}?done=cancelled", headers=BROWSER)
    assert read(unrelated).statuses == []
    assert (await stored(sessions, other_id)).status == "pending"


# ----------------------------------------------------------------------------- rebooking


async def test_rebook_to_a_free_time_from_the_list(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    callback_id, token = await new_callback(client, auth, settings, language="en")
    page = read(await client.get(f"/v1/self/{token}", headers=BROWSER))

    assert "Choose another time" in page.h2
    assert page.legends[0].startswith("Today, ") or page.legends[0].startswith("Tomorrow, ")
    assert re.fullmatch(r"\d{1,2}\.\d{2}\u2013\d{1,2}\.\d{2}", page.radios[0].label)
    chosen = page.radios[5]
    form = page.form_with("Book the selected time")
    done = await client.post(
        form.action, data={**form.hidden, "slot_id": chosen.value}, headers=BROWSER
    )

    assert done.status_code == 303
    assert done.headers["location"] == f"/v1/self/{token}?done=rebooked"
    callback = await stored(sessions, callback_id)
    assert callback.status == "scheduled"
    assert callback.slot_start is not None
    assert callback.slot_start.strftime("%Y-%m-%dT%H:%M:%SZ") == chosen.value
    after = read(await client.get(done.headers["location"], headers=BROWSER))
    assert after.h1 == "Your callback is booked"
    assert after.statuses == ["Your new time has been booked."]
    start, end = chosen.label.split("\u2013")
    assert "We will call you" in after.text
    assert f"between {start} and {end}." in after.text
    # The time now held is not offered again.
    assert chosen.value not in {radio.value for radio in after.radios}


async def test_a_time_taken_meanwhile_is_refused_and_nothing_is_lost(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/capacity", json=plan_body(agents=1, per_agent=1), headers=admin)
    mine_id, mine = await new_callback(client, auth, settings, language="en")
    _, theirs = await new_callback(client, auth, settings, phone="050 999 8888")
    page = read(await client.get(f"/v1/self/{mine}", headers=BROWSER))
    form = page.form_with("Book the selected time")
    early, late = page.radios[2].value, page.radios[6].value
    held = await client.post(form.action, data={**form.hidden, "slot_id": early}, headers=BROWSER)
    assert held.status_code == 303
    # Someone else takes the later time while this customer still has the old page open.
    taken = await client.post(f"/v1/self/{theirs}", json={"action": "rebook", "slot_id": late})
    assert taken.status_code == 200, taken.text

    refused = await client.post(form.action, data={**form.hidden, "slot_id": late}, headers=BROWSER)

    assert refused.status_code == 409
    page = read(refused)
    assert page.alerts == ["Sorry, that time was just taken. Please choose another time."]
    assert page.h1 == "Your callback is booked"
    assert late not in {radio.value for radio in page.radios}
    # Giving up the earlier seat to try the later one was rolled back with the refusal.
    callback = await stored(sessions, mine_id)
    assert callback.slot_start is not None
    assert callback.slot_start.strftime("%Y-%m-%dT%H:%M:%SZ") == early
    slots = (
        await client.get("/v1/slots", params={"from": early, "to": late}, headers=auth)
    ).json()["items"]
    assert [s["booked"] for s in slots if s["id"] == early] == [1]


async def test_a_missing_or_bogus_time_is_explained(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    callback_id, token = await new_callback(client, auth, settings, language="en")
    path = f"/v1/self/{token}"

    missing = await client.post(path, data={"action": "rebook"}, headers=FORM)
    bogus = await client.post(
        path, data={"action": "rebook", "slot_id": "2001-01-01T00:00:00Z"}, headers=FORM
    )
    unknown = await client.post(path, data={"action": "delete-everything"}, headers=FORM)

    assert (missing.status_code, read(missing).alerts) == (422, ["Please choose a time first."])
    assert (bogus.status_code, read(bogus).alerts) == (
        422,
        ["That time cannot be booked. Please choose another time."],
    )
    assert (unknown.status_code, read(unknown).alerts) == (
        422,
        ["Please choose what you want to do."],
    )
    assert (await stored(sessions, callback_id)).status == "pending"


async def test_the_chosen_language_stays_through_the_form(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    _, token = await new_callback(client, auth, settings, language="en")
    page = read(await client.get(f"/v1/self/{token}?lang=fi", headers=BROWSER))
    ask = page.form_with("Peru soittopyyntö")
    confirm = read(await client.get(ask.action, params=ask.hidden, headers=BROWSER))
    assert confirm.lang == "fi"
    yes = confirm.form_with("Kyllä, peru soittopyyntö")
    done = await client.post(yes.action, data=yes.hidden, headers=BROWSER)
    assert done.headers["location"] == f"/v1/self/{token}?done=cancelled&lang=fi"
    after = read(await client.get(done.headers["location"], headers=BROWSER))
    assert after.statuses == ["Soittopyyntösi on peruttu. Emme soita sinulle."]


# ----------------------------------------------------------------------------- bad links


async def test_an_expired_link_gets_a_friendly_page_in_the_readers_language(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    callback_id, _ = await new_callback(client, auth, settings, language="en")
    old = expired_token(settings, callback_id)
    headers = {**BROWSER, "Accept-Language": "sv-FI,sv;q=0.9,en;q=0.5"}

    shown = await client.get(f"/v1/self/{old}", headers=headers)
    posted = await client.post(
        f"/v1/self/{old}", data={"action": "cancel"}, headers={**FORM, **headers}
    )

    for response in (shown, posted):
        assert response.status_code == 410
        assert_page_headers(response)
        page = read(response)
        assert (page.lang, page.h1) == ("sv", "Länken har gått ut")
        assert page.forms == []
        assert callback_id not in response.text
    detail = await client.get(f"/v1/callbacks/{callback_id}", headers=auth)
    assert detail.json()["status"] == "pending"


async def test_a_tampered_or_unknown_link_gets_a_friendly_404(
    client: AsyncClient, auth: dict[str, str], settings: CallbackSettings
) -> None:
    callback_id, token = await new_callback(client, auth, settings, language="en")
    unknown = create_token(settings, "01a00000-0000-7000-8000-000000000000")

    for bad in (tampered(token), unknown, "x" * 600):
        shown = await client.get(f"/v1/self/{bad}", headers={**BROWSER, "Accept-Language": "de"})
        assert shown.status_code == 404
        assert_page_headers(shown)
        page = read(shown)
        # No language of ours asked for: the site's default (Finnish).
        assert (page.lang, page.h1) == ("fi", "Linkki ei toimi")
        assert page.forms == []
        assert callback_id not in shown.text
    english = await client.post(
        f"/v1/self/{tampered(token)}",
        data={"action": "cancel"},
        headers={**FORM, "Accept-Language": "en-GB,en;q=0.9"},
    )
    assert english.status_code == 404
    assert read(english).h1 == "This link does not work"
    detail = await client.get(f"/v1/callbacks/{callback_id}", headers=auth)
    assert detail.json()["status"] == "pending"


# ----------------------------------------------------------------------------- through intake


@pytest.fixture
async def callback_server(settings: CallbackSettings) -> AsyncIterator[LiveServer]:
    server = LiveServer(create_callback(settings))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def intake(
    settings_kwargs: dict[str, Any], callback_server: LiveServer, clean_db: None
) -> AsyncIterator[AsyncClient]:
    settings = IntakeSettings(**{**settings_kwargs, "callback_url": callback_server.url})
    async for client in serve_asgi(create_intake(settings)):
        yield client


async def test_the_page_and_its_redirect_survive_intakes_proxy(
    intake: AsyncClient,
    callback_server: LiveServer,
    auth: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with httpx.AsyncClient(base_url=callback_server.url) as callback:
        callback_id, token = await new_callback(callback, auth, settings, language="en")
    # The path of the link in the SMS, which points at intake.
    link = f"/v1/self/{token}"

    shown = await intake.get(link, headers=BROWSER)
    assert shown.status_code == 200
    assert shown.headers["content-type"] == "text/html; charset=utf-8"
    assert_page_headers(shown)
    assert shown.headers["content-language"] == "en"
    confirm = read(await intake.get(link, params={"confirm": "cancel"}, headers=BROWSER))
    yes = confirm.form_with("Yes, cancel my callback")

    done = await intake.post(yes.action, data=yes.hidden, headers=BROWSER)

    assert done.status_code == 303
    location = done.headers["location"]
    assert location == f"/v1/self/{token}?done=cancelled"
    assert (await stored(sessions, callback_id)).status == "cancelled"
    after = await intake.get(
        urlsplit(location).path, params=dict(parse_qsl(urlsplit(location).query)), headers=BROWSER
    )
    assert after.status_code == 200
    assert read(after).statuses == ["Your callback has been cancelled. We will not call you."]
