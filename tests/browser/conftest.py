"""Browser tests: the distribution's Chromium, driven by Playwright, against real processes.

Playwright's own browser download is never used: `make test` installs the distribution's
Chromium when it is missing and it may (scripts/install-chromium); where it cannot, every
test here is skipped with a message that says so. Screenshots are kept as test artefacts in
`test-artifacts/browser/` (or under `RINGBACK_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.infra import ROOT
from tests.support.signing import new_secret
from tests.support.stack import Stack, delivering_to, running_stack

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling home, which a closed network refuses noisily.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

WEBHOOK_SECRET = new_secret()


def chromium_path() -> str | None:
    explicit = os.environ.get("RINGBACK_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def artifacts_dir() -> Path:
    root = Path(os.environ.get("RINGBACK_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    folder = root / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "Chromium is not installed and could not be installed here (`make test` tries "
            "`apt-get install chromium` as root); set RINGBACK_CHROMIUM to a Chromium binary "
            "to run the browser tests"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser context with a phone-sized screen; a screenshot is kept at the end."""
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, locale="en-GB", timezone_id="Europe/Helsinki"
    )
    context.set_default_timeout(15_000)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        await opened.screenshot(path=str(artifacts_dir() / f"{name}-final.png"), full_page=True)
        await context.close()


async def snapshot(page: Page, name: str) -> None:
    """Keep a screenshot of this moment of the flow as a test artefact."""
    await page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)


@pytest.fixture
def stack(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        **delivering_to(gateway, inbox, tmp_path / "sink"),
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running
