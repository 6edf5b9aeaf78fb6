"""`ringback demo` (`make demo`): one realistic, signed missed call into a running `make run`.

It prints what a newcomer wants to see: intake's answer, the customer's timeline as history
records it, and the SMS and email the customer received (from the development sink). Then an
agent calls the customer back and reaches them, the satisfaction survey goes out, the customer
replies "5 kiitos" by SMS, and the demo ends with the queue's wallboard figures (DESIGN §13).
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
from shared.vocabulary import AttemptOutcome, Language

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


def _run_value(name: str) -> str | None:
    """A value `make run` gave the services: from this environment when it configures the
    stack (it names the webhook secret), else from `make run`'s file. Never a mix of both,
    so a demo against someone else's stack does not sign with a secret it never had."""
    if os.environ.get("RINGBACK_WEBHOOK_SECRETS"):
        return os.environ.get(name) or None
    return dev_secrets().get(name)


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
DEMO_QUEUE_NAME = "Laskutus (demo)"
# What the demo's queue adds to show §13: the survey at once and at any hour, whenever the demo
# is run (a real queue keeps its quiet hours and a delay), and goals for the wallboard.
_SURVEYED: dict[str, Any] = {
    "survey": {"enabled": True, "delay_minutes": 0},
    "sms_quiet_hours": {"start": "00:00", "end": "00:00"},
    "goals": {"sla_share": 0.8, "csat_average": 4.2, "reach_rate": 0.9},
}


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
            existing = await repository.get_queue(session, DEMO_QUEUE)
            if existing is not None and existing.name != DEMO_QUEUE_NAME:
                return  # an operator's own `billing` queue: left as it is
            config = dict(existing.config) if existing is not None else {}
            if existing is not None and all(config.get(k) == v for k, v in _SURVEYED.items()):
                return
            if existing is None:
                owner = await repository.queue_owning(session, DEMO_NUMBER)
                config = {
                    "name": DEMO_QUEUE_NAME,
                    "numbers": [] if owner else [DEMO_NUMBER],
                    "languages": ["fi", "sv", "en"],
                    "timezone": "Europe/Helsinki",
                }
            # A demo queue set up by an earlier version gains the survey and goals.
            body = queues.QueueIn.model_validate({**config, **_SURVEYED})
            await queues.put_queue(session=session, settings=settings, key=DEMO_QUEUE, body=body)
            await session.commit()
            if existing is None:
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
    shown = _show_sink(started)
    ours = [item["id"] for item in landed.json().get("items", [])] if landed.is_success else []
    if not ours:
        return 0
    return await _reach_and_survey(urls, key, caller, ours[0], wait_seconds, shown)


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


def _show_sink(since: float, shown: set[Path] | None = None) -> set[Path]:
    """Print what the development sink received since `since` and not in `shown`; all shown."""
    sink = Path(os.environ.get("RINGBACK_SINK_DIR", str(data_dir() / "outbox")))
    if not sink.exists():
        print("\n(no development sink directory: SMS and email went to real providers)")
        return set()
    fresh = sorted(
        (
            p
            for p in sink.rglob("*")
            if p.is_file() and p.stat().st_mtime >= since - 1 and p not in (shown or set())
        ),
        key=lambda p: p.stat().st_mtime,
    )
    for path in fresh:
        print(f"\n--- {path} ---")
        print(_readable(path))
    return (shown or set()) | set(fresh)


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


# The agent the demo calls back as: unknown to `/v1/agents`, so served from every queue.
DEMO_AGENT = "demo-agent"


async def _reach_and_survey(
    urls: dict[str, str],
    key: str,
    caller: _Caller,
    callback_id: str,
    wait_seconds: float,
    shown: set[Path],
) -> int:
    """An agent reaches the caller; the survey goes out and is answered; the wallboard."""
    survey_from = _run_value("RINGBACK_SURVEY_FROM")
    sms_secret = (_run_value("RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS") or "").split(",")[0].strip()
    internal = _run_value("RINGBACK_INTERNAL_API_KEY")
    if not (survey_from and sms_secret and internal):
        print(
            "\n(the survey part of the demo needs RINGBACK_SURVEY_FROM, "
            "RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS and RINGBACK_INTERNAL_API_KEY, as `make run` "
            "sets them)"
        )
        return 0
    callback = urls["callback"]
    # The agent's actions use the internal key, which may act for any agent (DESIGN §9).
    agent = {"authorization": f"Bearer {internal}"}
    reader = {"authorization": f"Bearer {key}"}
    started = time.time()
    async with httpx.AsyncClient(timeout=10) as client:
        print(f"\n→ {DEMO_AGENT} calls {caller.name} back (claim, then the attempt: reached)")
        # Ahead of anything else waiting on this stack, so the claim hands out this caller.
        await client.patch(
            f"{callback}/v1/callbacks/{callback_id}", json={"priority": 1000}, headers=agent
        )
        claimed = await client.post(
            f"{callback}/v1/queue/claim", json={"agent_id": DEMO_AGENT}, headers=agent
        )
        if claimed.status_code != 200 or claimed.json()["id"] != callback_id:
            print(f"← {claimed.status_code}: another callback came first; the demo stops here")
            return 1
        reached = await client.post(
            f"{callback}/v1/callbacks/{callback_id}/attempts",
            json={
                "agent_id": DEMO_AGENT,
                "outcome": AttemptOutcome.REACHED,
                "note": "Invoice explained",
            },
            headers=agent,
        )
        print(f"← {reached.status_code} callback {reached.json()['callback']['status']}")
        if reached.status_code != 201:
            return 1
        sent = await _wait_for_event(client, urls["history"], key, caller.e164, "survey_sent",
                                     wait_seconds)  # fmt: skip
        if sent is None:
            print(f"no survey went out within {wait_seconds:.0f} s")
            return 1
        _show_sink(started, shown)
        reply = {
            "id": f"sms_{secrets.token_hex(8)}",
            "from": caller.e164,
            "to": survey_from,
            "text": "5 kiitos",
            "received_at": datetime.now(UTC).isoformat(),
        }
        body = dumps(reply)
        msg_id, stamp = f"msg_{secrets.token_hex(8)}", int(time.time())
        from shared.standard_webhooks import sign

        print(f'\n→ POST {urls["intake"]}/v1/webhooks/sms  ({caller.name} replies "5 kiitos")')
        answer = await client.post(
            f"{urls['intake']}/v1/webhooks/sms",
            content=body,
            headers={
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(sms_secret, msg_id, stamp, body),
            },
        )
        print(f"← {answer.status_code} {answer.text}")
        answered = await _wait_for_event(
            client, urls["history"], key, caller.e164, "survey_answered", wait_seconds
        )
        if answered is None:
            print(f"the answer did not reach the timeline within {wait_seconds:.0f} s")
            return 1
        data = answered["data"]
        print(f"  {answered['occurred_at']}  survey_answered    score {data['score']}, "
              f"comment {data.get('comment')!r}, agent {data.get('agent_id')}")  # fmt: skip
        board = await client.get(
            f"{callback}/v1/wallboard", params={"queue": DEMO_QUEUE}, headers=reader
        )
    if board.status_code != 200:
        print(f"the wallboard answered {board.status_code}")
        return 1
    _show_wallboard(board.json())
    return 0


async def _wait_for_event(
    client: httpx.AsyncClient, history: str, key: str, phone: str, type_: str, wait: float
) -> dict[str, Any] | None:
    """The newest `type_` event on the timeline of `phone`'s customer, once it is there."""
    auth = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await client.get(f"{history}/v1/customers", params={"phone": phone}, headers=auth)
        if found.status_code != 200 or not found.json()["items"]:
            continue
        customer_id = found.json()["items"][0]["id"]
        page = await client.get(
            f"{history}/v1/customers/{customer_id}/timeline",
            params={"type": type_},
            headers=auth,
        )
        items: list[dict[str, Any]] = page.json().get("items", []) if page.is_success else []
        if items:
            return items[0]
    return None


def _show_wallboard(board: dict[str, Any]) -> None:
    waiting, agents, sla, csat = board["waiting"], board["agents"], board["sla"], board["csat"]

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    print(f"\nWallboard of queue {board['queue']!r} (GET /v1/wallboard; the page is "
          "/console/wallboard on history):")  # fmt: skip
    print(f"  waiting {waiting['waiting']}, overdue {waiting['overdue']}, "
          f"due in the next hour {waiting['due_next_hour']}")  # fmt: skip
    print(f"  agents available {agents['available']}, on a callback {agents['on_callback']}, "
          f"on a break {agents['on_break']}")  # fmt: skip
    print(f"  SLA today {share(sla['share'])} of {sla['closed']} closed "
          f"(goal {share(sla['goal'])}: {sla['verdict'] or '-'})")  # fmt: skip
    average = "-" if csat["average"] is None else f"{csat['average']:.1f}"
    print(f"  CSAT today {average} from {csat['responses']} answer(s) "
          f"(goal {csat['goal'] or '-'}: {csat['verdict'] or '-'})")  # fmt: skip
    print(f"  promises at risk {board['promises_at_risk']}")
