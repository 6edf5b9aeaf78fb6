"""`ringback demo` (`make demo`): one realistic, signed missed call into a running `make run`.

It prints what a newcomer wants to see: intake's answer, the customer's timeline as history
records it, and the SMS and email the customer received (from the development sink).
`--language et` makes the caller an Estonian customer, who gets the confirmation in Estonian.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from services.cli.devstate import (
    SERVICES,
    data_dir,
    dev_secrets,
    ensure_database_url,
    save_dev_value,
    service_url,
)
from shared.jsonutil import dumps
from shared.settings import CommonSettings
from shared.vocabulary import Language

_EXPECTED = {"missed_call", "callback_created", "notification_sent"}


@dataclass(frozen=True)
class _Caller:
    """A customer of the demo: a fresh number each run, so each demo is a new customer."""

    local: str
    e164: str
    name: str
    email: str


def _caller(language: Language | None) -> _Caller:
    if language == "et":
        # An Estonian mobile, written as Estonians write it (EE is an SMS country by default).
        local = f"+372 5{random.randint(100, 999)} {random.randint(1000, 9999)}"
        return _Caller(local, local.replace(" ", ""), "Mari", "mari.maasikas@example.ee")
    local = f"040 {random.randint(100, 999)} {random.randint(1000, 9999)}"
    e164 = "+358" + local.replace(" ", "")[1:]
    return _Caller(local, e164, "Maija", "maija.meikalainen@example.fi")


def run_demo(*, timeout: float = 30.0, language: Language | None = None) -> int:
    return asyncio.run(_demo(wait_seconds=timeout, language=language))


def _secret(name: str) -> str:
    return os.environ.get(name) or dev_secrets()[name]


DEMO_KEY_NAME = "demo"
DEMO_SCOPES = ("history:read", "callbacks:read")


async def _read_key() -> str:
    """A `history:read` key for the demo, created once and remembered in `.data/`.

    The remembered key is used while it still works in every database; one that no longer
    does (revoked, or the data was reset with its keys) is replaced by a new one. Nothing is
    revoked: every other key is the user's.
    """
    given = os.environ.get("RINGBACK_DEMO_API_KEY")
    if given:
        return given
    from shared.apikeys import create_key, generate_key
    from shared.db import create_engine, create_session_factory
    from shared.ids import new_id

    stored = dev_secrets().get("RINGBACK_DEMO_API_KEY")
    url, server = ensure_database_url()
    # A key must work at callback and history: with a database per service it goes into each.
    urls = sorted(set(CommonSettings(database_url=url).all_database_urls().values()))
    try:
        if stored and await _works_everywhere(stored, urls):
            return stored
        key, key_id = generate_key()[0], new_id()
        for db_url in urls:
            engine = create_engine(
                CommonSettings(database_url=db_url), application_name="ringback.demo"
            )
            try:
                async with create_session_factory(engine)() as session:
                    await create_key(
                        session,
                        name=DEMO_KEY_NAME,
                        scopes=list(DEMO_SCOPES),
                        key=key,
                        key_id=key_id,
                    )
                    await session.commit()
            finally:
                await engine.dispose()
    finally:
        if server is not None:
            server.stop()
    save_dev_value("RINGBACK_DEMO_API_KEY", key)
    return key


async def _works_everywhere(key: str, urls: list[str]) -> bool:
    """Whether `key` is known, active and has the demo's scopes in every one of `urls`."""
    from shared.apikeys import find_principal
    from shared.db import create_engine, create_session_factory

    for db_url in urls:
        engine = create_engine(
            CommonSettings(database_url=db_url), application_name="ringback.demo"
        )
        try:
            async with create_session_factory(engine)() as session:
                principal = await find_principal(session, key)
        finally:
            await engine.dispose()
        if principal is None or not set(DEMO_SCOPES) <= principal.scopes:
            return False
    return True


# The queue the demo's call names, set up the first time if an operator has not made it.
DEMO_QUEUE = "billing"
DEMO_NUMBER = "+358942451000"


async def _ensure_demo_queue() -> None:
    """A `billing` queue owning the number the demo caller dials (kept if it exists)."""
    from services.callback import queues, repository
    from services.callback.settings import CallbackSettings
    from shared.db import create_engine, create_session_factory

    url, server = ensure_database_url()
    settings = CallbackSettings(database_url=url)
    engine = create_engine(settings, application_name="ringback.demo", service="callback")
    try:
        async with create_session_factory(engine)() as session:
            if await repository.get_queue(session, DEMO_QUEUE) is None:
                owner = await repository.queue_owning(session, DEMO_NUMBER)
                body = queues.QueueIn(
                    name="Laskutus (demo)",
                    numbers=[] if owner else [DEMO_NUMBER],
                    languages=["fi", "sv", "en"],
                    timezone="Europe/Helsinki",
                )
                await queues.put_queue(
                    session=session, settings=settings, key=DEMO_QUEUE, body=body
                )
                await session.commit()
                print(f"(set up queue {DEMO_QUEUE!r} for the demo; it owns {DEMO_NUMBER})")
    finally:
        await engine.dispose()
        if server is not None:
            server.stop()


def demo_urls() -> dict[str, str]:
    """Where the services are: the environment's word, else where `make run` says it listens."""
    return {service: service_url(service) for service in SERVICES}


async def _demo(wait_seconds: float, language: Language | None = None) -> int:
    urls = demo_urls()
    secret = _secret("RINGBACK_WEBHOOK_SECRETS").split(",")[0].strip()
    await _ensure_demo_queue()
    from shared.standard_webhooks import sign

    caller = _caller(language)
    local, e164 = caller.local, caller.e164
    # What a PBX's CRM lookup may know about the caller; it gets the email confirmation, in
    # their language when it is known (otherwise the site's default).
    customer: dict[str, str] = {"email": caller.email, "name": caller.name}
    if language is not None:
        customer["language"] = language
    call = {
        "id": f"evt_{secrets.token_hex(8)}",
        "call_id": f"demo-{secrets.token_hex(6)}",
        "from": local,
        "to": "+358 9 4245 1000",
        "status": "no_answer",
        "occurred_at": datetime.now(UTC).isoformat(),
        "queue": DEMO_QUEUE,
        "metadata": {"customer": customer},
    }
    body = dumps(call)
    msg_id = f"msg_{secrets.token_hex(8)}"
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }
    started = time.time()
    async with httpx.AsyncClient(timeout=5) as client:
        intake = urls["intake"]
        print(f"→ POST {intake}/v1/webhooks/generic  (missed call from {local})")
        try:
            answer = await client.post(
                f"{intake}/v1/webhooks/generic", content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            print(f"intake is not reachable ({exc}); is `make run` running?")
            return 1
        print(f"← {answer.status_code} {answer.text}")
        if answer.status_code != 202:
            return 1
        key = await _read_key()
        history = urls["history"]
        timeline = await _wait_for_timeline(client, history, key, e164, wait_seconds)
        landed = await client.get(
            f"{urls['callback']}/v1/callbacks",
            params={"phone": e164},
            headers={"authorization": f"Bearer {key}"},
        )
    if timeline is None:
        print(f"the timeline did not show all events within {wait_seconds:.0f} s")
        return 1
    for item in landed.json().get("items", []) if landed.status_code == 200 else []:
        print(
            f"\nCallback {item['id']} is in queue {item['queue']!r}: {item['status']}, "
            f"language {item['language']}, due {item['due_at']}"
        )
    print(f"\nTimeline of {e164} (newest first):")
    for event in timeline:
        print(
            f"  {event['occurred_at']}  {event['type']:18} {event['channel']:6} {event['summary']}"
        )
    _show_sink(started)
    return 0


async def _wait_for_timeline(
    client: httpx.AsyncClient, history: str, key: str, phone: str, wait_seconds: float
) -> list[dict[str, Any]] | None:
    auth = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await client.get(f"{history}/v1/customers", params={"phone": phone}, headers=auth)
        if found.status_code != 200 or not found.json()["items"]:
            continue
        customer_id = found.json()["items"][0]["id"]
        page = await client.get(f"{history}/v1/customers/{customer_id}/timeline", headers=auth)
        items: list[dict[str, Any]] = page.json().get("items", [])
        sends = sum(1 for item in items if item["type"] == "notification_sent")
        if _EXPECTED <= {item["type"] for item in items} and sends >= 2:
            return items
    return None


def _show_sink(since: float) -> None:
    sink = Path(os.environ.get("RINGBACK_SINK_DIR", str(data_dir() / "outbox")))
    if not sink.exists():
        print("\n(no development sink directory: SMS and email went to real providers)")
        return
    fresh = sorted(
        (p for p in sink.rglob("*") if p.is_file() and p.stat().st_mtime >= since - 1),
        key=lambda p: p.stat().st_mtime,
    )
    for path in fresh:
        print(f"\n--- {path} ---")
        print(_readable(path))


def _readable(path: Path) -> str:
    """The file as a person reads it: an .eml decoded (headers and UTF-8 body)."""
    if path.suffix != ".eml":
        return path.read_text(encoding="utf-8", errors="replace").rstrip()
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    head = "\n".join(f"{name}: {message[name]}" for name in ("From", "To", "Subject"))
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return f"{head}\n\n{str(text).rstrip()}"
