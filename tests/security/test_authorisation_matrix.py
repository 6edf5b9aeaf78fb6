"""Every route of every service refuses callers without a key (401) or the scope (403).

Routes are read from each app's own route table, and the scopes from the `require_scope(...)`
dependencies each route declares, so a new route is covered the day it is added; the table
below pins what those declarations are, so widening a route's access is a visible change.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from httpx import AsyncClient, Response

from services.intake.telephony.twilio import compute_signature
from shared.apikeys import SCOPES
from shared.ids import new_id
from tests.security.conftest import (
    CTI_TOKEN,
    PUBLIC_BASE_URL,
    SERVICE_NAMES,
    TWILIO_TOKEN,
    WEBHOOK_SECRET,
    Clients,
    build_apps,
)
from tests.support.signing import body_of, call_event, new_secret, signed_headers

# Routes outside the API-key scheme, and why.
EXEMPT: dict[str, str] = {
    "/healthz": "liveness probe: must answer without credentials",
    "/readyz": "readiness probe: must answer without credentials",
    "/metrics": "scraped by Prometheus on the internal network (DESIGN §2)",
    "/openapi.json": "the published API description",
    "/docs": "the published API description",
    "/docs/oauth2-redirect": "part of the Swagger UI",
    "/docs/{asset}": "Swagger UI's script and stylesheet, from the installed package",
    "/v1/webhooks/generic": "Standard Webhooks signature instead (matrix below)",
    "/v1/webhooks/twilio": "X-Twilio-Signature instead (matrix below)",
    "/v1/webhooks/cti/{token}": "the CTI token in the path instead (matrix below)",
    "/v1/webhooks/twilio/dial/{dial_id}": "X-Twilio-Signature instead (tests/e2e/test_dialing)",
    "/v1/webhooks/twilio/dial/{dial_id}/status": "X-Twilio-Signature instead",
    "/v1/webhooks/twilio/dial/{dial_id}/connect": "X-Twilio-Signature instead",
    "/v1/webhooks/dialer": "Standard Webhooks signature with the dialer's own secret instead",
    "/v1/webhooks/twilio/sms": "X-Twilio-Signature instead (tests/intake/test_inbound_sms)",
    "/v1/webhooks/sms": "Standard Webhooks signature with the inbound SMS secret instead "
    "(tests/intake/test_inbound_sms)",
    "/v1/twiml/wait": "X-Twilio-Signature instead (tests/intake/test_twiml_wait)",
    "/v1/twiml/wait/press": "X-Twilio-Signature instead (tests/intake/test_twiml_wait)",
    "/v1/twiml/voicemail": "X-Twilio-Signature instead (tests/intake/test_voicemail)",
    "/v1/webhooks/twilio/voicemail": "X-Twilio-Signature instead (tests/intake/test_voicemail)",
    "/v1/webhooks/twilio/recording": "X-Twilio-Signature instead (tests/intake/test_voicemail)",
    "/v1/webhooks/twilio/transcription": "X-Twilio-Signature instead (tests/intake/test_voicemail)",
    "/v1/self/{token}": "the customer's signed self-service link is the credential",
    "/console": "the agent console's static files: no data; the agent's key unlocks the API",
    "/console/": "the agent console's static files: no data; the agent's key unlocks the API",
    "/console/config.json": "where the console finds callback's API: no data",
    "/console/wallboard": "the wallboard page (a static file): no data; a key unlocks the API",
    "/console/{name}": "the agent console's static files: no data",
}

# What each route declares today: (service, method, path) -> scopes (admin is always admitted).
EXPECTED: dict[tuple[str, str, str], frozenset[str]] = {
    ("intake", "POST", "/v1/contact-requests"): frozenset({"intake:write"}),
    ("intake", "GET", "/v1/inbound"): frozenset({"admin"}),
    ("intake", "GET", "/v1/inbound/{inbound_id}"): frozenset({"admin"}),
    ("intake", "POST", "/v1/inbound/{inbound_id}/replay"): frozenset({"admin"}),
    ("intake", "POST", "/v1/erasures"): frozenset({"internal", "admin"}),
    ("callback", "POST", "/v1/callbacks"): frozenset({"callbacks:write", "internal"}),
    # Every item may send: only the relay's key, whose contacts intake has capped already.
    ("callback", "POST", "/v1/callbacks:batch"): frozenset({"internal"}),
    ("callback", "GET", "/v1/callbacks"): frozenset({"callbacks:read", "internal"}),
    ("callback", "GET", "/v1/callbacks/{callback_id}"): frozenset({"callbacks:read", "internal"}),
    ("callback", "POST", "/v1/callbacks/{callback_id}/book"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "POST", "/v1/callbacks/{callback_id}/cancel"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "POST", "/v1/callbacks/{callback_id}/lease"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "POST", "/v1/callbacks/{callback_id}/attempts"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "PATCH", "/v1/callbacks/{callback_id}/attempts/{attempt_id}"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "POST", "/v1/callbacks/{callback_id}/dial"): frozenset(
        {"callbacks:write", "internal"}
    ),
    # What the phone system reports reaches callback only through intake's relay.
    ("callback", "POST", "/v1/dials/{dial_id}/events"): frozenset({"internal"}),
    ("callback", "POST", "/v1/dials/{dial_id}/connect"): frozenset({"internal"}),
    # Inbound SMS (survey replies, STOP) reach callback only through intake's relay.
    ("callback", "POST", "/v1/inbound-sms"): frozenset({"internal"}),
    ("callback", "PATCH", "/v1/callbacks/{callback_id}"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "POST", "/v1/queue/claim"): frozenset({"callbacks:write", "internal"}),
    ("callback", "GET", "/v1/queues"): frozenset({"callbacks:read", "internal"}),
    ("callback", "GET", "/v1/queues/{key}"): frozenset({"callbacks:read", "internal"}),
    ("callback", "PUT", "/v1/queues/{key}"): frozenset({"admin"}),
    ("callback", "DELETE", "/v1/queues/{key}"): frozenset({"admin"}),
    ("callback", "GET", "/v1/queues/{key}/staffing"): frozenset({"callbacks:read"}),
    ("callback", "GET", "/v1/wallboard"): frozenset({"callbacks:read"}),
    ("callback", "GET", "/v1/queues/{key}/offer"): frozenset(
        {"intake:write", "callbacks:read", "internal"}
    ),
    ("intake", "GET", "/v1/queues/{key}/offer"): frozenset({"intake:write", "callbacks:read"}),
    # §11 voicemail: intake forwards it; agents read it and play its audio.
    ("callback", "POST", "/v1/voicemails"): frozenset({"internal"}),
    ("callback", "GET", "/v1/voicemails/{voicemail_id}"): frozenset({"callbacks:read", "internal"}),
    ("callback", "GET", "/v1/voicemails/{voicemail_id}/audio"): frozenset({"callbacks:read"}),
    ("callback", "GET", "/v1/agents"): frozenset({"callbacks:read", "internal"}),
    ("callback", "GET", "/v1/agents/{agent_id}"): frozenset({"callbacks:read", "internal"}),
    ("callback", "PUT", "/v1/agents/{agent_id}"): frozenset({"admin"}),
    ("callback", "DELETE", "/v1/agents/{agent_id}"): frozenset({"admin"}),
    ("callback", "PUT", "/v1/agents/{agent_id}/presence"): frozenset(
        {"callbacks:write", "internal"}
    ),
    ("callback", "GET", "/v1/me"): frozenset({"callbacks:read", "callbacks:write", "internal"}),
    ("callback", "GET", "/v1/queue"): frozenset({"callbacks:read", "internal"}),
    ("callback", "PUT", "/v1/capacity"): frozenset({"admin"}),
    ("callback", "GET", "/v1/capacity"): frozenset({"callbacks:read", "internal"}),
    ("callback", "GET", "/v1/slots"): frozenset({"callbacks:read", "intake:write", "internal"}),
    ("callback", "POST", "/v1/answered-calls"): frozenset({"internal"}),
    ("callback", "POST", "/v1/acknowledgements"): frozenset({"callbacks:write", "internal"}),
    ("callback", "POST", "/v1/erasures"): frozenset({"internal", "admin"}),
    ("callback", "PUT", "/v1/dnc/{phone}"): frozenset({"admin"}),
    ("callback", "DELETE", "/v1/dnc/{phone}"): frozenset({"admin"}),
    ("callback", "GET", "/v1/notifications"): frozenset({"admin"}),
    ("callback", "POST", "/v1/notifications/{notification_id}/retry"): frozenset({"admin"}),
    ("history", "POST", "/v1/events"): frozenset({"history:write", "internal"}),
    ("history", "POST", "/v1/events:batch"): frozenset({"history:write", "internal"}),
    ("history", "GET", "/v1/customers"): frozenset({"history:read"}),
    ("history", "GET", "/v1/customers/{customer_id}"): frozenset({"history:read"}),
    ("history", "GET", "/v1/customers/{customer_id}/timeline"): frozenset({"history:read"}),
    ("history", "GET", "/v1/customers/{customer_id}/merges"): frozenset({"history:read"}),
    ("history", "DELETE", "/v1/customers/{customer_id}"): frozenset({"admin"}),
    ("history", "GET", "/v1/stream"): frozenset({"history:read"}),
    ("history", "GET", "/v1/stats"): frozenset({"history:read"}),
    ("history", "POST", "/v1/webhook-endpoints"): frozenset({"admin"}),
    ("history", "GET", "/v1/webhook-endpoints"): frozenset({"admin"}),
    ("history", "GET", "/v1/webhook-endpoints/{endpoint_id}"): frozenset({"admin"}),
    ("history", "PATCH", "/v1/webhook-endpoints/{endpoint_id}"): frozenset({"admin"}),
    ("history", "DELETE", "/v1/webhook-endpoints/{endpoint_id}"): frozenset({"admin"}),
    ("history", "POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): frozenset({"admin"}),
    ("history", "GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): frozenset({"admin"}),
    ("history", "POST", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay"): (
        frozenset({"admin"})
    ),
}

# Routes that pass an admitted caller on to another service, not running in this test: their
# 503 problem ("cannot be reached") shows the key got through.
FORWARDED = {("intake", "GET", "/v1/queues/{key}/offer")}

# Path parameters that look real, so routing matches and only authorisation can refuse.
PATH_VALUES = {"phone": "+358401234567", "key": "default", "agent_id": "anna"}


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _walk(dependency)


def declared_scopes(context: RouteContext) -> list[frozenset[str]]:
    """The scope tuples of every `require_scope(...)` dependency the route runs."""
    dependant: Dependant = getattr(context, "dependant")  # noqa: B009 - proxied attribute
    found: list[frozenset[str]] = []
    seen: set[int] = set()
    for dependency in _walk(dependant):
        call: Any = dependency.call
        code = getattr(call, "__code__", None)
        if code is None or getattr(call, "__qualname__", "") != "require_scope.<locals>.dependency":
            continue
        # One check named twice (in `dependencies=` and as the endpoint's principal) runs
        # once: FastAPI caches a dependency by its callable within a request.
        if id(call) in seen:
            continue
        seen.add(id(call))
        cells = dict(zip(code.co_freevars, call.__closure__ or (), strict=True))
        found.append(frozenset(cells["scopes"].cell_contents))
    return found


def protected_routes(app: FastAPI) -> list[tuple[str, str, RouteContext]]:
    """(method, path, route) for every route that is not exempt; anything else fails loudly."""
    out: list[tuple[str, str, RouteContext]] = []
    for context in iter_route_contexts(app.routes):
        methods = set(context.methods or ()) - {"HEAD", "OPTIONS"}
        if context.path in EXEMPT or not methods:
            continue
        assert isinstance(context.original_route, APIRoute), f"{context.path}: not an API route"
        path = str(context.path)
        out.extend((method, path, context) for method in sorted(methods))
    return out


def concrete_path(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: PATH_VALUES.get(m.group(1), new_id()), path)


async def call(client: AsyncClient, method: str, path: str, headers: dict[str, str]) -> Response:
    # A JSON body on writes, so a 415 or a body error can never stand in for the auth answer.
    if method in {"POST", "PUT", "PATCH"}:
        return await client.request(method, path, headers=headers, json={})
    return await client.request(method, path, headers=headers)


def test_every_route_is_either_exempt_or_declares_its_scopes(
    settings_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    seen: dict[tuple[str, str, str], frozenset[str]] = {}
    for service, app in build_apps(settings_kwargs, tmp_path).items():
        routes = protected_routes(app)
        for method, path, route in routes:
            scopes = declared_scopes(route)
            assert len(scopes) == 1, f"{method} {path}: {len(scopes)} require_scope dependencies"
            seen[(service, method, path)] = scopes[0]
        # The published description lists nothing this enumeration missed.
        published = {
            (method.upper(), path)
            for path, operations in app.openapi()["paths"].items()
            for method in operations
            if path not in EXEMPT
        }
        assert published == {(method, path) for method, path, _ in routes}
    assert seen == EXPECTED


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_every_route_answers_401_403_and_admits_its_scopes(
    service: str,
    clients: Clients,
    make_key: Callable[..., Awaitable[str]],
    internal_key: str,
) -> None:
    client = clients[service]
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    keys = {scope: await make_key(scope, name=f"matrix-{scope}") for scope in SCOPES}
    failures: list[str] = []
    routes = protected_routes(app)
    assert routes, "no protected routes found: the enumeration is broken"
    for method, path, route in routes:
        [accepted] = declared_scopes(route)
        url = concrete_path(path)
        label = f"{method} {path}"

        for headers in ({}, {"Authorization": "Bearer rb_000000000000_" + "x" * 43}):
            answer = await call(client, method, url, headers)
            if (
                answer.status_code != 401
                or answer.headers.get("content-type") != "application/problem+json"
                or answer.headers.get("www-authenticate") != "Bearer"
            ):
                failures.append(f"{label} without a valid key: {answer.status_code}")

        others = [s for s in SCOPES if s not in accepted and s != "admin"]
        if others:
            # One key holding every scope this route does not take.
            unrelated = await make_key(*others, name="matrix-unrelated")
            answer = await call(client, method, url, {"Authorization": f"Bearer {unrelated}"})
            if (
                answer.status_code != 403
                or answer.headers.get("content-type") != "application/problem+json"
                or answer.json().get("status") != 403
            ):
                failures.append(f"{label} with scopes {others}: {answer.status_code}")

        for scope in sorted(accepted | {"admin"}):
            key = internal_key if scope == "internal" else keys[scope]
            answer = await call(client, method, url, {"Authorization": f"Bearer {key}"})
            forwarded = answer.status_code == 503 and (service, method, path) in FORWARDED
            if answer.status_code in {401, 403} or (answer.status_code >= 500 and not forwarded):
                failures.append(f"{label} with {scope}: {answer.status_code} {answer.text[:200]}")
    assert not failures, "\n".join(failures)


# --- webhooks: their own credentials --------------------------------------------------------


def _generic(case: str) -> tuple[str, bytes, dict[str, str]]:
    body = body_of(call_event())
    if case == "missing":
        return "/v1/webhooks/generic", body, {"content-type": "application/json"}
    if case == "wrong":
        return "/v1/webhooks/generic", body, signed_headers(new_secret(), body)
    if case == "stale":
        stamp = int(time.time()) - 3600
        return "/v1/webhooks/generic", body, signed_headers(WEBHOOK_SECRET, body, timestamp=stamp)
    if case == "future":
        stamp = int(time.time()) + 3600
        return "/v1/webhooks/generic", body, signed_headers(WEBHOOK_SECRET, body, timestamp=stamp)
    # Signed for another body: the signature covers the raw bytes.
    headers = signed_headers(WEBHOOK_SECRET, body)
    return "/v1/webhooks/generic", body.replace(b"no_answer", b"answered "), headers


def _twilio(case: str) -> tuple[str, bytes, dict[str, str]]:
    params = {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": "AC" + "3f" * 16,
        "From": "+358401234567",
        "To": "+358942451000",
        "CallStatus": "no-answer",
        "Direction": "inbound",
    }
    path = "/v1/webhooks/twilio"
    body = urlencode(params).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    url = PUBLIC_BASE_URL + path
    if case == "wrong":
        headers["x-twilio-signature"] = compute_signature("not-the-token", url, params)
    elif case == "other-url":
        headers["x-twilio-signature"] = compute_signature(TWILIO_TOKEN, url + "?x=1", params)
    elif case == "tampered":
        headers["x-twilio-signature"] = compute_signature(TWILIO_TOKEN, url, params)
        body = body.replace(b"no-answer", b"completed")
    return path, body, headers


def _cti(case: str) -> tuple[str, bytes, dict[str, str]]:
    token = {"wrong": "x" * len(CTI_TOKEN), "short": "x", "prefix": CTI_TOKEN[:-1]}[case]
    body = body_of({"event": "hangup", "call_id": "c-1", "direction": "in", "from": "0401234567"})
    return f"/v1/webhooks/cti/{token}", body, {"content-type": "application/json"}


WEBHOOK_CASES = [
    *(("generic", c) for c in ("missing", "wrong", "stale", "future", "tampered")),
    # Twilio's scheme has no timestamp, so there is no staleness to test; retries dedupe on ids.
    *(("twilio", c) for c in ("missing", "wrong", "other-url", "tampered")),
    *(("cti", c) for c in ("wrong", "short", "prefix")),
]
_BUILDERS = {"generic": _generic, "twilio": _twilio, "cti": _cti}


@pytest.mark.parametrize(("provider", "case"), WEBHOOK_CASES)
async def test_webhooks_without_a_valid_credential_are_refused_and_not_stored(
    provider: str,
    case: str,
    clients: Clients,
    row_counts: Callable[[], Awaitable[dict[str, int]]],
) -> None:
    path, body, headers = _BUILDERS[provider](case)
    before = await row_counts()
    answer = await clients["intake"].post(path, content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert await row_counts() == before


async def test_a_replayed_generic_webhook_is_processed_once(
    clients: Clients, row_counts: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    body = body_of(call_event())
    headers = signed_headers(WEBHOOK_SECRET, body, msg_id="msg_security_replay")
    first = await clients["intake"].post("/v1/webhooks/generic", content=body, headers=headers)
    assert first.status_code == 202, first.text
    after_first = await row_counts()
    other = body_of(call_event())
    replays = [
        (body, headers),
        # The same message id with another, validly signed body is the same message.
        (other, signed_headers(WEBHOOK_SECRET, other, msg_id="msg_security_replay")),
    ]
    for content, replay_headers in replays:
        answer = await clients["intake"].post(
            "/v1/webhooks/generic", content=content, headers=replay_headers
        )
        assert answer.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert await row_counts() == after_first
