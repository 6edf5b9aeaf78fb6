"""`POST /v1/self/{token}` on intake: its body documented for API clients, never parsed.

Intake's OpenAPI names the JSON and the form body callback takes (issue #23, item 4); the
forwarder still hands callback the body and its content type exactly as they came, so what is
accepted stays callback's to decide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI, Request
from httpx import AsyncClient
from starlette.responses import JSONResponse, Response

from services.callback.app import create_app as create_callback
from services.callback.schemas import SelfServiceAction
from services.callback.selfservice import create_token
from services.callback.settings import CallbackSettings
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.callback.helpers import callback_body, plan_body
from tests.conftest import serve_asgi
from tests.support.live import LiveServer, live

FORM = "application/x-www-form-urlencoded"


async def test_the_openapi_document_declares_the_json_and_the_form_body(
    intake: AsyncClient,
) -> None:
    document = (await intake.get("/openapi.json")).json()
    operations = document["paths"]["/v1/self/{token}"]

    body = operations["post"]["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", FORM}
    as_json = body["content"]["application/json"]["schema"]
    as_form = body["content"][FORM]["schema"]
    # The JSON body is callback's `SelfServiceAction`, field for field.
    callbacks = SelfServiceAction.model_json_schema()
    assert set(as_json["properties"]) == set(callbacks["properties"]) == {"action", "slot_id"}
    assert as_json["required"] == callbacks["required"] == ["action"]
    assert as_json["additionalProperties"] is False
    for schema in (as_json, as_form):
        assert schema["type"] == "object"
        [slot_id] = [s for s in schema["properties"]["slot_id"]["anyOf"] if s["type"] == "string"]
        assert slot_id["maxLength"] == 64
    assert as_json["properties"]["action"]["enum"] == ["cancel", "rebook"]
    # The page's forms also answer the survey (DESIGN §13) and say which language to answer in.
    assert as_form["properties"]["action"]["enum"] == ["cancel", "rebook", "survey"]
    assert set(as_form["properties"]) == {"action", "slot_id", "lang", "score", "comment"}
    [score] = [s for s in as_form["properties"]["score"]["anyOf"] if s["type"] == "integer"]
    assert (score["minimum"], score["maximum"]) == (1, 5)
    [lang] = [s for s in as_form["properties"]["lang"]["anyOf"] if s["type"] == "string"]
    assert lang["enum"] == ["fi", "sv", "en", "et"]
    assert "requestBody" not in operations["get"]


# ----------------------------------------------------------------------------- forwarding


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[LiveServer, list[dict[str, Any]]]]:
    """A stand-in for callback that records each request exactly as it arrived."""
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.api_route("/v1/self/{token}", methods=["GET", "POST"])
    async def record(token: str, request: Request) -> Response:
        seen.append(
            {
                "token": token,
                "query": request.url.query,
                "content_type": request.headers.get("content-type"),
                "body": await request.body(),
            }
        )
        return JSONResponse({"seen": len(seen)}, status_code=299)

    async with live(app) as server:
        yield server, seen


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        # Spacing, key order, a field callback would refuse: none of it is intake's business.
        (
            "application/json; charset=utf-8",
            b'{ "slot_id" :"2026-11-24T12:30:00Z",\n  "action": "rebook", "extra": [1, 2.50] }',
        ),
        ("application/json", b'{"action": "delete-everything"}'),
        (FORM, b"action=rebook&slot_id=2026-11-24T12%3A30%3A00Z&lang=sv&lang=fi"),
        (f"{FORM}; charset=UTF-8", b"action=cancel&unknown=%FF"),
    ],
)
async def test_a_post_is_forwarded_byte_for_byte(
    intake_settings: IntakeSettings,
    clean_db: None,
    upstream: tuple[LiveServer, list[dict[str, Any]]],
    content_type: str,
    body: bytes,
) -> None:
    server, seen = upstream
    settings = intake_settings.model_copy(update={"callback_url": server.url})
    async for client in serve_asgi(create_app(settings)):
        answer = await client.post(
            "/v1/self/a-token?lang=en", content=body, headers={"content-type": content_type}
        )

    assert (answer.status_code, answer.json()) == (299, {"seen": 1})
    assert seen == [
        {"token": "a-token", "query": "lang=en", "content_type": content_type, "body": body}
    ]


@pytest.fixture
async def callback_server(settings_kwargs: dict[str, Any]) -> AsyncIterator[LiveServer]:
    async with live(create_callback(CallbackSettings(**settings_kwargs))) as server:
        yield server


async def test_an_api_client_rebooks_through_intake_with_the_link_alone(
    intake_settings: IntakeSettings,
    clean_db: None,
    callback_server: LiveServer,
    settings_kwargs: dict[str, Any],
    internal_key: str,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    async with AsyncClient(base_url=callback_server.url) as callback:
        admin = {"authorization": f"Bearer {await make_key('admin')}"}
        assert (await callback.put("/v1/capacity", json=plan_body(), headers=admin)).is_success
        created = await callback.post(
            "/v1/callbacks",
            json=callback_body(language="en"),
            headers={"authorization": f"Bearer {internal_key}"},
        )
        assert created.status_code == 201, created.text
    token = create_token(CallbackSettings(**settings_kwargs), created.json()["id"])
    link = f"/v1/self/{token}"

    settings = intake_settings.model_copy(update={"callback_url": callback_server.url})
    async for intake in serve_asgi(create_app(settings)):
        seen = await intake.get(link, headers={"accept": "application/json"})
        assert seen.status_code == 200, seen.text
        chosen = seen.json()["free_slots"][0]
        rebooked = await intake.post(link, json={"action": "rebook", "slot_id": chosen["id"]})

    assert rebooked.status_code == 200, rebooked.text
    assert rebooked.headers["cache-control"] == "no-store"
    assert (rebooked.json()["status"], rebooked.json()["slot_id"]) == ("scheduled", chosen["id"])
    assert rebooked.json()["when"] == chosen["label"]
