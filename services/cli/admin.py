"""Operator commands that call the services' admin REST APIs: `ringback inbound ...`,
`ringback capacity ...`, `ringback agent ...` and `ringback queue ...`. They need an `admin`
API key and the service's URL, nothing else."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from services.cli import devstate
from services.cli.capacity_csv import CsvError, parse_capacity_csv, summarize


class CliFailure(Exception):
    """Something the operator must be told on standard error; carries the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _complain(text: str) -> None:
    sys.stderr.write(text + "\n")


def service_url(service: str, override: str | None = None) -> str:
    """`--url`, else `RINGBACK_<SERVICE>_URL`, else loopback on `RINGBACK_<SERVICE>_PORT`, else
    where a running `make run` listens, else the default port."""
    return devstate.service_url(service, override)


def admin_key(given: str | None) -> str:
    key = given or os.environ.get("RINGBACK_ADMIN_API_KEY")
    if not key:
        raise CliFailure(
            "error: no API key: set RINGBACK_ADMIN_API_KEY or pass --api-key "
            "(a key with scope admin: `ringback api-key create --scope admin --name ops`)",
            code=2,
        )
    return key


def _problem(response: httpx.Response) -> str:
    """An RFC 9457 answer as `status title: detail`, with validation errors one per line."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        return f"error: {response.status_code} {response.reason_phrase}: {response.text[:300]}"
    title = problem.get("title") or response.reason_phrase
    lines = [f"error: {response.status_code} {title}: {problem.get('detail', '')}".rstrip(": ")]
    for error in problem.get("errors") or []:
        where = ".".join(str(part) for part in error.get("loc", []) if part != "body")
        lines.append(f"  {where or 'body'}: {error.get('msg', '')}")
    return "\n".join(lines)


def call(
    method: str,
    service: str,
    path: str,
    *,
    args: argparse.Namespace,
    params: dict[str, Any] | None = None,
    body: Any = None,
) -> Any:
    """One admin request; the JSON answer, or `CliFailure` with the problem's title and detail."""
    response = send(method, service, path, args=args, params=params, body=body)
    return response.json() if response.content else None


def send(
    method: str,
    service: str,
    path: str,
    *,
    args: argparse.Namespace,
    params: dict[str, Any] | None = None,
    body: Any = None,
) -> httpx.Response:
    """`call`, for a command that also reads the status (created or replaced)."""
    base = service_url(service, getattr(args, "url", None))
    headers = {"authorization": f"Bearer {admin_key(getattr(args, 'api_key', None))}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=args.timeout) as client:
            response = client.request(method, path, params=params, json=body)
    except httpx.HTTPError as exc:
        raise CliFailure(f"error: cannot reach {service} at {base} ({exc})") from None
    if not response.is_success:
        raise CliFailure(_problem(response))
    return response


# --- inbound ---------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def cmd_inbound_list(args: argparse.Namespace) -> int:
    params = {"status": args.status, "provider": args.provider, "limit": args.limit}
    if args.cursor:
        params["cursor"] = args.cursor
    page = call(
        "GET",
        "intake",
        "/v1/inbound",
        args=args,
        params={k: v for k, v in params.items() if v is not None},
    )
    items: list[dict[str, Any]] = page["items"]
    if not items:
        _say("no inbound records match")
        return 0
    rows = [
        [
            item["id"],
            str(item["received_at"])[:19].replace("T", " "),
            item["provider"],
            item["kind"],
            item["status"],
            _shorten(item.get("reason") or "", 70),
        ]
        for item in items
    ]
    for line in _table(rows, ["ID", "RECEIVED (UTC)", "PROVIDER", "KIND", "STATUS", "REASON"]):
        _say(line)
    if page.get("next_cursor"):
        _say(f"more: ringback inbound list ... --cursor {page['next_cursor']}")
    return 0


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_inbound_replay(args: argparse.Namespace) -> int:
    result = call("POST", "intake", f"/v1/inbound/{args.inbound_id}/replay", args=args)
    outcome = result["result"]
    _say(f"{result['id']}: {result['status']}")
    _say(f"recorded as {outcome['id']}: {outcome['status']}")
    return 0


# --- capacity --------------------------------------------------------------------------


def cmd_capacity_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliFailure(f"error: cannot read {path}: {exc.strerror}", code=2) from None
    try:
        body = parse_capacity_csv(
            text,
            timezone=args.timezone,
            slot_minutes=args.slot_minutes,
            per_agent=args.per_agent,
        )
    except CsvError as exc:
        raise CliFailure(f"error: {path}: {exc}", code=2) from None
    _check_locally(body)
    if args.dry_run:
        _say(json.dumps(body, indent=2, ensure_ascii=False))
        _say()
        for line in summarize(body):
            _say(line)
        _say("dry run: nothing was sent")
        return 0
    stored = call("PUT", "callback", "/v1/capacity", args=args, body=body)
    for line in summarize(stored):
        _say(line)
    return 0


def _check_locally(body: dict[str, Any]) -> None:
    """The plan model's own rules (time zone, limits), before anything is sent."""
    from pydantic import ValidationError

    from services.callback.capacity import CapacityPlan

    try:
        CapacityPlan.model_validate(body)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()
        )
        raise CliFailure(f"error: the plan is not valid: {details}", code=2) from None


def cmd_capacity_show(args: argparse.Namespace) -> int:
    plan = call("GET", "callback", "/v1/capacity", args=args)
    if args.json:
        _say(json.dumps(plan, indent=2, ensure_ascii=False))
        return 0
    for line in summarize(plan):
        _say(line)
    return 0


# --- agents and queues (design §9) -----------------------------------------------------------


def _agent_path(agent_id: str) -> str:
    # Quoted whole, so an id with a slash is refused by callback rather than naming another path.
    return f"/v1/agents/{quote(agent_id, safe='')}"


def _words(values: list[str]) -> str:
    # "-" for none, and one word either way, so a column never looks empty.
    return ",".join(values) or "-"


def cmd_agent_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "queues": args.queue,
        "languages": args.language or [],
    }
    if args.phone:
        body["phone"] = args.phone
    if args.sip:
        body["sip"] = args.sip
    response = send("PUT", "callback", _agent_path(args.agent_id), args=args, body=body)
    agent = response.json()
    done = "added" if response.status_code == 201 else "replaced"
    _say(
        f"{done} agent {agent['id']} ({agent['name']}): queues {_words(agent['queues'])}, "
        f"languages {_words(agent['languages'])}, presence {agent['presence']}"
    )
    return 0


def cmd_agent_list(args: argparse.Namespace) -> int:
    agents: list[dict[str, Any]] = call("GET", "callback", "/v1/agents", args=args)
    if not agents:
        _say("no agents are known to callback (`ringback agent add` adds one)")
        return 0
    rows = [
        [
            agent["id"],
            agent["name"],
            _words(agent["queues"]),
            # No languages listed: the agent takes callbacks in any language.
            _words(agent["languages"]),
            agent["presence"],
        ]
        for agent in agents
    ]
    for line in _table(rows, ["ID", "NAME", "QUEUES", "LANGUAGES", "PRESENCE"]):
        _say(line)
    return 0


def cmd_agent_remove(args: argparse.Namespace) -> int:
    call("DELETE", "callback", _agent_path(args.agent_id), args=args)
    _say(f"removed agent {args.agent_id}")
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    queues: list[dict[str, Any]] = call("GET", "callback", "/v1/queues", args=args)
    rows = [
        [
            queue["key"],
            queue["name"],
            _words(queue["languages"]),
            _words(queue["numbers"]),
            queue["effective_timezone"],
        ]
        for queue in queues
    ]
    for line in _table(rows, ["KEY", "NAME", "LANGUAGES", "NUMBERS", "TIMEZONE"]):
        _say(line)
    return 0
