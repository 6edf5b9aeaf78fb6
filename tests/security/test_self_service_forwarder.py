"""Intake's forwarder of self-service links: limited per client address, headers kept.

The review's attack (issue #14): `/v1/self/{token}` on intake was forwarded to callback without
any limit, so one address could hammer it, and every rebook it got through can send an SMS.
And the forwarder dropped the page's `X-Frame-Options` and `Vary` on the way to the browser.
Intake and callback run here as real processes; a trusted proxy on loopback names the clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.callback.selfservice import create_token
from services.callback.settings import CallbackSettings
from tests.callback.helpers import callback_body
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

SELF_SERVICE_PER_IP = 3
CONTACT_PER_IP = 2
ATTACKER = "203.0.113.66"
CUSTOMER = "198.51.100.7"
BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
FORM = {**BROWSER, "content-type": "application/x-www-form-urlencoded"}
SELF_ROUTE = "/v1/self/{token}"


@pytest.fixture
def stack(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    extra = {
        "RINGBACK_RATE_LIMIT_SELF_SERVICE_PER_IP": str(SELF_SERVICE_PER_IP),
        "RINGBACK_RATE_LIMIT_PER_IP": str(CONTACT_PER_IP),
        "RINGBACK_TRUSTED_PROXIES": "127.0.0.1",
    }
    with running_stack(base_env, tmp_path / "logs", extra, ("callback", "intake")) as running:
        yield running


async def _new_callback(http: httpx.AsyncClient, stack: Stack, internal_key: str) -> str:
    """A waiting callback of ours; its id."""
    created = await http.post(
        f"{stack.url('callback')}/v1/callbacks",
        json=callback_body(),
        headers={"authorization": f"Bearer {internal_key}"},
    )
    assert created.status_code == 201, created.text
    callback_id: str = created.json()["id"]
    return callback_id


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def _self_service_seen(metrics: str, method: str) -> float:
    """How many self-service requests of `method` callback itself answered."""
    return sum(
        value
        for labels, value in _samples(metrics, "ringback_http_requests_total")
        if labels["route"] == SELF_ROUTE and labels["method"] == method
    )


@pytest.mark.timeout(90)
async def test_one_address_over_the_limit_is_refused_and_another_still_gets_its_page(
    stack: Stack,
    settings_kwargs: dict[str, Any],
    internal_key: str,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    intake = stack.url("intake")
    async with httpx.AsyncClient(timeout=10) as http:
        callback_id = await _new_callback(http, stack, internal_key)
        token = create_token(CallbackSettings(**settings_kwargs), callback_id)
        link = f"{intake}/v1/self/{token}"
        attacker = {"x-forwarded-for": ATTACKER}

        # The attacker has the link (a forwarded SMS, a shared screen) and hammers it.
        views = [
            await http.get(link, headers={**BROWSER, **attacker})
            for _ in range(SELF_SERVICE_PER_IP)
        ]
        assert [v.status_code for v in views] == [200] * SELF_SERVICE_PER_IP
        refused = [await http.get(link, headers={**BROWSER, **attacker}) for _ in range(2)]
        refused.append(
            await http.post(link, content=b"action=cancel", headers={**FORM, **attacker})
        )
        for answer in refused:
            assert answer.status_code == 429, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            retry_after = int(answer.headers["retry-after"])
            assert 0 < retry_after <= 3600
            problem = answer.json()
            assert problem["status"] == 429
            assert problem["limit"] == "self_service_ip"
            assert problem["detail"] == (
                "Too many self-service requests for this client IP; "
                f"try again in {retry_after} seconds."
            )

        # The customer, at another address, still opens their page, and nothing was cancelled.
        page = await http.get(link, headers={**BROWSER, "x-forwarded-for": CUSTOMER})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        state = await http.get(
            f"{stack.url('callback')}/v1/callbacks/{callback_id}",
            headers={"authorization": f"Bearer {internal_key}"},
        )
        assert state.json()["status"] not in {"cancelled", "completed"}, state.json()

        # Callback answered only what intake let through: three views and the customer's.
        seen = (await http.get(f"{stack.url('callback')}/metrics")).text
        assert _self_service_seen(seen, "GET") == SELF_SERVICE_PER_IP + 1
        assert _self_service_seen(seen, "POST") == 0

        # The contact-request allowance of the same address is untouched by all of that.
        writer = {"authorization": f"Bearer {await make_key('intake:write')}", **attacker}
        contacts = [
            await http.post(
                f"{intake}/v1/contact-requests",
                json={"channel": "web", "phone": f"+35840111{n:04d}", "message": "hei"},
                headers=writer,
            )
            for n in range(CONTACT_PER_IP + 1)
        ]
        assert [c.status_code for c in contacts] == [202] * CONTACT_PER_IP + [429]
        assert contacts[-1].json()["limit"] == "ip"
        assert contacts[-1].json()["detail"].startswith("Too many contact requests for this ip")

        counted = (await http.get(f"{intake}/metrics")).text
    refusals = {
        labels["limit"]: value
        for labels, value in _samples(counted, "ringback_intake_rate_limited_total")
    }
    assert refusals == {"self_service_ip": 3.0, "ip": 1.0}

    # One line per refusal, naming neither the address nor the link.
    log = (stack.logs / "intake.log").read_text()
    assert log.count('"intake.self_service.rate_limited"') == 3
    assert ATTACKER not in log
    assert token not in log


async def test_the_forwarded_page_keeps_its_anti_framing_and_caching_headers(
    stack: Stack, settings_kwargs: dict[str, Any], internal_key: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        callback_id = await _new_callback(http, stack, internal_key)
        token = create_token(CallbackSettings(**settings_kwargs), callback_id)
        path = f"/v1/self/{token}"
        direct = await http.get(f"{stack.url('callback')}{path}", headers=BROWSER)
        through_intake = await http.get(f"{stack.url('intake')}{path}", headers=BROWSER)

    assert direct.status_code == through_intake.status_code == 200
    assert through_intake.headers["x-frame-options"] == direct.headers["x-frame-options"] == "DENY"
    assert through_intake.headers["vary"] == direct.headers["vary"]
    assert "Accept-Language" in through_intake.headers["vary"]


async def test_the_json_view_of_a_link_is_never_cached(
    stack: Stack, settings_kwargs: dict[str, Any], internal_key: str
) -> None:
    """A shared proxy or the browser's cache must not keep what one customer's link shows."""
    async with httpx.AsyncClient(timeout=10) as http:
        callback_id = await _new_callback(http, stack, internal_key)
        token = create_token(CallbackSettings(**settings_kwargs), callback_id)
        link = f"{stack.url('intake')}/v1/self/{token}"
        viewed = await http.get(link, headers={"accept": "application/json"})
        acted = await http.post(link, json={"action": "cancel"})

    for answer in (viewed, acted):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
