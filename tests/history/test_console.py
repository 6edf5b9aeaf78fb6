"""The agent console: history serves its files at /console/ under a strict CSP, and tells it
where callback's API is."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from httpx import AsyncClient

from services.history.app import create_app
from services.history.console.routes import CONSOLE_DIR
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings

CALLBACK_URL = "https://callback.example.fi:8443"


@pytest.fixture
async def console(settings_kwargs: dict[str, Any]) -> AsyncIterator[AsyncClient]:
    settings = history_settings(settings_kwargs, console_callback_url=f"{CALLBACK_URL}/")
    async for http in serve_asgi(create_app(settings)):
        yield http


def _csp(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


async def test_the_page_is_served_with_a_csp_that_allows_only_this_origin_and_callback(
    console: AsyncClient,
) -> None:
    response = await console.get("/console/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>ringback agent console</title>" in response.text
    csp = _csp(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", CALLBACK_URL]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_page_has_nothing_inline_that_its_csp_would_block(console: AsyncClient) -> None:
    html = (await console.get("/console/")).text

    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts == [""], "every script is an external module"
    assert '<script type="module" src="console.js">' in html
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"


async def test_every_module_and_stylesheet_the_page_loads_is_served_with_its_type(
    console: AsyncClient,
) -> None:
    html = (await console.get("/console/")).text
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert stylesheets == ["console.css"]
    css = await console.get(urljoin("/console/", stylesheets[0]))
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert "content-security-policy" in css.headers

    # Follow the imports from the entry module: a browser refuses a module script that is
    # missing or not served as JavaScript, and the console would not start.
    pending, seen = ["console.js"], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = await console.get(urljoin("/console/", name))
        assert response.status_code == 200, name
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", name
        pending += re.findall(r'^import .* from "\./([^"]+)";$', response.text, flags=re.M)
    assert seen == {"console.js", "api.js", "sse.js", "dom.js", "charts.js"}


async def test_config_names_the_configured_callback_url(console: AsyncClient) -> None:
    response = await console.get("/console/config.json")

    assert response.status_code == 200
    assert response.json() == {"callback_url": CALLBACK_URL, "site_timezone": "Europe/Helsinki"}


async def test_config_defaults_to_callback_url(settings_kwargs: dict[str, Any]) -> None:
    settings = history_settings(settings_kwargs, callback_url="http://callback.internal:8002")
    async for http in serve_asgi(create_app(settings)):
        assert (await http.get("/console/config.json")).json() == {
            "callback_url": "http://callback.internal:8002",
            "site_timezone": "Europe/Helsinki",
        }
        csp = _csp((await http.get("/console/")).headers["content-security-policy"])
        assert csp["connect-src"] == ["'self'", "http://callback.internal:8002"]


async def test_console_without_slash_redirects_to_the_page(console: AsyncClient) -> None:
    response = await console.get("/console")

    assert response.status_code == 308
    assert urljoin("http://test/console", response.headers["location"]) == "http://test/console/"
    followed = await console.get("/console", follow_redirects=True)
    assert followed.status_code == 200
    assert "ringback agent console" in followed.text


@pytest.mark.parametrize(
    "path",
    [
        "/console/nothing.js",
        "/console/console.py",
        "/console/%2e%2e%2fconsole.py",
        "/console/..%2Fsettings.py",
        "/console/%2e%2e/app.py",
    ],
)
async def test_only_the_console_files_are_served(console: AsyncClient, path: str) -> None:
    response = await console.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_no_api_data_becomes_markup_and_the_key_is_never_stored_for_good() -> None:
    """Customer names and notes are written by outsiders: the console never parses them as
    HTML, and the key lives in the tab's sessionStorage only."""
    sources = {path.name: path.read_text() for path in Path(CONSOLE_DIR).glob("*.js")}
    assert sources
    for name, source in sources.items():
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{name} uses {sink}"
        assert "localStorage" not in source, name
    assert "sessionStorage.setItem" in sources["console.js"]
