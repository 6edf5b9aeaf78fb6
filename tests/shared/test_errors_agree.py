"""Every service answers the same mistake the same way, and says what to do about it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from httpx import Response

from shared.logging import configure_logging
from tests.security.conftest import SERVICE_NAMES, Clients, build_apps, serve_all

# One write endpoint of each service that takes a JSON body.
WRITES = {
    "intake": "/v1/contact-requests",
    "callback": "/v1/callbacks",
    "history": "/v1/events",
}
MALFORMED = {
    "cut short": b'{"channel": "web", "name": ',
    "not json at all": b"{not json",
    "trailing comma": b'{"channel": "web",}',
    "not UTF-8": b'{"name": "\xff\xfe"}',
}
TOKEN = "tok3n-of-a-customer-4b5a6c7d8e9f"
PHONE = "+358401110004"


async def _clients(
    settings_kwargs: dict[str, Any], tmp_path: Path, **overrides: Any
) -> AsyncIterator[Clients]:
    apps = build_apps({**settings_kwargs, **overrides}, tmp_path / "sink")
    async with AsyncExitStack() as stack:
        yield await serve_all(stack, apps)


@pytest.fixture
async def clients(
    settings_kwargs: dict[str, Any], clean_db: None, tmp_path: Path
) -> AsyncIterator[Clients]:
    async for served in _clients(settings_kwargs, tmp_path):
        yield served


@pytest.fixture
async def clients_without_docs(
    settings_kwargs: dict[str, Any], clean_db: None, tmp_path: Path
) -> AsyncIterator[Clients]:
    async for served in _clients(settings_kwargs, tmp_path, public_docs=False):
        yield served


@pytest.fixture
async def admin(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin')}"}


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="DEBUG", json=True, process="pytest")
    yield stream
    monkeypatch.undo()
    configure_logging(level="WARNING", json=True, process="pytest")


def _problem(answer: Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("content", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_json_is_the_same_400_on_every_service(
    content: bytes, clients: Clients, admin: dict[str, str]
) -> None:
    answers: dict[str, dict[str, Any]] = {}
    for service, path in WRITES.items():
        answer = await clients[service].post(
            path, content=content, headers={**admin, "content-type": "application/json"}
        )
        body = _problem(answer, 400)
        assert body.pop("instance") == path
        answers[service] = body

    assert answers["intake"] == {
        "type": "urn:ringback:problem:bad-request",
        "title": "Bad Request",
        "status": 400,
        "detail": "The body is not valid JSON (UTF-8).",
    }
    assert answers["callback"] == answers["intake"]
    assert answers["history"] == answers["intake"]


async def test_an_unknown_route_names_the_path_and_points_to_the_docs(clients: Clients) -> None:
    for service in SERVICE_NAMES:
        body = _problem(await clients[service].get("/v1/no-such-thing/here"), 404)
        assert "GET /v1/no-such-thing/here" in body["detail"], body
        assert "/docs" in body["detail"], body
        assert (await clients[service].get("/docs")).status_code == 200


async def test_without_served_docs_the_404_does_not_point_to_them(
    clients_without_docs: Clients,
) -> None:
    for service in SERVICE_NAMES:
        client = clients_without_docs[service]
        body = _problem(await client.post("/v1/no-such-thing", json={}), 404)
        assert "POST /v1/no-such-thing" in body["detail"], body
        assert "/docs" not in body["detail"], body
        assert (await client.get("/docs")).status_code == 404


async def test_a_known_route_keeps_its_own_404(clients: Clients, admin: dict[str, str]) -> None:
    # Only "no such route" names the path: a missing record says what is missing.
    body = _problem(await clients["callback"].get("/v1/callbacks/nosuch", headers=admin), 404)
    assert "/v1/callbacks/nosuch" not in body["detail"]
    assert "/docs" not in body["detail"]


async def test_the_path_of_an_unknown_route_is_shown_to_the_caller_but_never_logged(
    clients: Clients, log_output: io.StringIO
) -> None:
    paths = [f"/v1/self/{TOKEN}/nope", f"/v1/dnc/{PHONE}/nope", f"/v1/selfservice/{TOKEN}"]
    for service in SERVICE_NAMES:
        for path in paths:
            body = _problem(await clients[service].get(path), 404)
            assert path in body["detail"]

    logged = log_output.getvalue()
    assert logged.count('"route": "unmatched"') >= len(SERVICE_NAMES) * len(paths)
    assert TOKEN not in logged
    assert PHONE not in logged
    assert PHONE.removeprefix("+") not in logged


async def test_json_nested_too_deep_gets_the_same_answer_everywhere(
    clients: Clients, admin: dict[str, str]
) -> None:
    depth = 10_000
    content = b"[" * depth + b"]" * depth
    answers = []
    for service, path in WRITES.items():
        answer = await clients[service].post(
            path, content=content, headers={**admin, "content-type": "application/json"}
        )
        body = _problem(answer, 400)
        answers.append((body["type"], body["detail"]))
    assert (
        answers == [("urn:ringback:problem:bad-request", "The body is not valid JSON (UTF-8).")] * 3
    )
