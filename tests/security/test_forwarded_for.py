"""Whom intake trusts to name the client: `RINGBACK_TRUSTED_PROXIES` alone decides.

Intake limits contact requests per client address. A caller who could name their own address
in `X-Forwarded-For` would get a fresh allowance with every request. The server process ran
with uvicorn's proxy headers on, which trusted any `X-Forwarded-For` from loopback before our
rule was asked. These tests run `ringback serve intake` for real and send from loopback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

PER_IP = 3


async def _statuses(url: str, key: str, count: int) -> list[int]:
    """`count` contact requests, each claiming to come from a different address."""
    statuses = []
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(count):
            answer = await http.post(
                f"{url}/v1/contact-requests",
                json={"channel": "web", "phone": f"+35840111{n:04d}", "message": "hei"},
                headers={"authorization": f"Bearer {key}", "x-forwarded-for": f"203.0.113.{n}"},
            )
            statuses.append(answer.status_code)
    return statuses


async def test_a_spoofed_forwarded_for_from_loopback_gets_no_fresh_allowance(
    base_env: dict[str, str],
    clean_db: None,
    make_key: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> None:
    key = await make_key("intake:write")
    extra = {"RINGBACK_RATE_LIMIT_PER_IP": str(PER_IP), "RINGBACK_TRUSTED_PROXIES": ""}
    with running_stack(base_env, tmp_path / "logs", extra, ("intake",)) as stack:
        statuses = await _statuses(stack.url("intake"), key, PER_IP + 2)
    assert statuses[:PER_IP] == [202] * PER_IP
    assert statuses[PER_IP:] == [429, 429]


async def test_a_trusted_proxy_names_the_client(
    base_env: dict[str, str],
    clean_db: None,
    make_key: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> None:
    key = await make_key("intake:write")
    extra = {"RINGBACK_RATE_LIMIT_PER_IP": str(PER_IP), "RINGBACK_TRUSTED_PROXIES": "127.0.0.1"}
    with running_stack(base_env, tmp_path / "logs", extra, ("intake",)) as stack:
        statuses = await _statuses(stack.url("intake"), key, PER_IP + 2)
    # Five different clients behind the proxy, one request each: none is over its limit.
    assert statuses == [202] * (PER_IP + 2)
