"""Run `ringback` as an operator does: a real subprocess, against services served over HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.callback.app import create_app as create_callback_app
from services.callback.settings import CallbackSettings
from services.intake.app import create_app as create_intake_app
from services.intake.settings import IntakeSettings
from tests.support.infra import ROOT
from tests.support.live import LiveServer, live
from tests.support.signing import new_secret


@dataclass(frozen=True)
class Run:
    """What the operator saw: exit code, standard output and standard error."""

    code: int
    out: str
    err: str


RunCli = Callable[..., Awaitable[Run]]


@pytest.fixture
def run_cli(base_env: dict[str, str]) -> RunCli:
    """`ringback ARGS...` as a child process; the test's event loop keeps serving meanwhile."""

    async def run(*args: str, env: dict[str, str] | None = None, answer: str = "") -> Run:
        """`answer`: what the operator types (standard input, then its end)."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
        environment.update(env or {})
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli.main",
            *args,
            cwd=ROOT,
            env=environment,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(answer.encode()), timeout=60)
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())

    return run


@pytest.fixture(scope="session")
def cli_webhook_secret() -> str:
    return new_secret()


@pytest.fixture
async def intake_server(
    settings_kwargs: dict[str, Any], cli_webhook_secret: str, clean_db: None
) -> AsyncIterator[LiveServer]:
    settings = IntakeSettings(**settings_kwargs, webhook_secrets=cli_webhook_secret)
    async with live(create_intake_app(settings)) as server:
        yield server


@pytest.fixture
async def callback_server(
    settings_kwargs: dict[str, Any], tmp_path: Path, clean_db: None
) -> AsyncIterator[LiveServer]:
    settings = CallbackSettings(**settings_kwargs, sink_dir=tmp_path / "sink")
    async with live(create_callback_app(settings)) as server:
        yield server
