"""The `ringback` command: run, serve, worker, intake-relay, migrate, keys, inbound, agents, ..."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from shared import eventloop, heap
from shared.logging import configure_logging, wants_json
from shared.telemetry import flush_before_signal, tracing
from shared.vocabulary import LANGUAGES, OutboxRowStatus

# Each service's app factory and settings class, imported only when that service is chosen.
SERVICES: dict[str, tuple[str, str]] = {
    "intake": ("services.intake.app:create_app", "services.intake.settings:IntakeSettings"),
    "callback": ("services.callback.app:create_app", "services.callback.settings:CallbackSettings"),
    "history": ("services.history.app:create_app", "services.history.settings:HistorySettings"),
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(import_module(module), attr)


def _settings(service: str) -> Any:
    """The service's settings from the environment, or a plain refusal naming what is wrong.

    pydantic's own message quotes the input, which holds every secret of the environment;
    an operator gets each problem's variable and reason, never the values.
    """
    from pydantic import ValidationError

    from services.cli.admin import CliFailure

    try:
        return _load(SERVICES[service][1])()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            variable = f"RINGBACK_{where.upper()}: " if where else ""
            message = error["msg"].removeprefix("Value error, ").replace("; ", "\n  ")
            problems.append(f"  {variable}{message}")
        raise CliFailure(
            f"ringback {service}: the configuration is refused:\n" + "\n".join(problems), 2
        ) from None


def _log_setup(process: str) -> None:
    level = os.environ.get("RINGBACK_LOG_LEVEL", "INFO")
    json_logs = wants_json(os.environ.get("RINGBACK_LOG_JSON"), sys.stderr)
    configure_logging(level=level, json=json_logs, process=process)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _log_setup(f"ringback.{args.service}")
    settings = _settings(args.service)
    app = _load(SERVICES[args.service][0])(settings)
    port = args.port or getattr(settings, f"{args.service}_port")
    config = uvicorn.Config(
        app,
        host=args.host,
        port=port,
        log_config=None,
        access_log=False,
        # Off: uvicorn would trust any X-Forwarded-For from loopback and rewrite the client
        # address before intake's own rule (RINGBACK_TRUSTED_PROXIES) is asked, so a caller
        # on the same host could pick a fresh address per request and dodge per-IP limits.
        # One setting decides whom to trust, and it is ours.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=20,
    )
    with tracing(settings, service=args.service) as provider:
        if provider is not None:
            flush_before_signal(provider)
        server = uvicorn.Server(config)
        heap.settle()
        server.run()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _log_setup("ringback.callback.worker")
    run_worker = _load("services.callback.worker:run_worker")
    settings = _settings("callback")
    with tracing(settings, service="worker"):
        heap.settle()
        run_worker(settings)
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    _log_setup("ringback.relay")
    run_relay = _load("services.intake.relay:run_relay")
    settings = _settings("intake")
    with tracing(settings, service="relay"):
        heap.settle()
        eventloop.run(run_relay(settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.cli.devstate import ensure_database_url
    from services.cli.migrate import upgrade_all
    from shared.settings import CommonSettings

    _log_setup("ringback.migrate")
    url, server = ensure_database_url()
    try:
        settings = CommonSettings(database_url=url)
        # DDL under a session advisory lock: on PostgreSQL itself, never through a pooler.
        upgrade_all(
            {svc: settings.direct_database_url_for(svc) for svc in settings.all_database_urls()}
        )
    finally:
        if server is not None:
            server.stop()
    print("migrations applied")
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    from services.cli.devstate import ensure_database_url
    from shared.apikeys import validate_agent, validate_scopes

    if args.action == "create":
        # Refused before any database is touched, so a refusal creates nothing anywhere.
        try:
            validate_scopes(args.scope or [])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            validate_agent(args.agent, args.scope or [])
        except ValueError as exc:
            print(f"error: --agent: {exc}", file=sys.stderr)
            return 2
    url, server = ensure_database_url()
    try:
        return asyncio.run(_api_key(args, url))
    finally:
        if server is not None:
            server.stop()


async def _api_key(args: argparse.Namespace, url: str) -> int:
    from services.cli.admin import _table
    from shared.apikeys import create_key, generate_key, list_keys, revoke_key
    from shared.db import create_engine, create_session_factory
    from shared.ids import new_id
    from shared.settings import CommonSettings

    settings = CommonSettings(database_url=url)
    # A key must work at every service: with one database per service it goes into each.
    urls = sorted(set(settings.all_database_urls().values()))
    key, key_id = generate_key()[0], new_id()
    outcome: list[str] = []
    for db_url in urls:
        engine = create_engine(CommonSettings(database_url=db_url), application_name="ringback.cli")
        try:
            async with create_session_factory(engine)() as session:
                if args.action == "create":
                    row, _ = await create_key(
                        session,
                        name=args.name,
                        scopes=args.scope,
                        key=key,
                        key_id=key_id,
                        agent_id=args.agent,
                    )
                    bound = f", acts only as agent {row.agent_id}" if row.agent_id else ""
                    outcome = [
                        f"created key {row.id} ({row.name}), scopes: {' '.join(row.scopes)}{bound}"
                    ]
                elif args.action == "list":
                    rows = [
                        [
                            row.id,
                            "revoked" if row.revoked_at else "active",
                            row.name,
                            # "-": every agent, and the column stays one word for `awk`.
                            row.agent_id or "-",
                            " ".join(row.scopes),
                        ]
                        for row in await list_keys(session)
                    ]
                    outcome = _table(rows, ["ID", "STATUS", "NAME", "AGENT", "SCOPES"])
                elif args.action == "revoke":
                    revoked = await revoke_key(session, key_id=args.key_id)
                    outcome = ["revoked" if revoked else "no such active key"]
                await session.commit()
        finally:
            await engine.dispose()
    for line in outcome:
        print(line)
    if args.action == "create":
        # Alone on the last line, so scripts can capture it with `tail -n 1`.
        print(key)
    return 1 if outcome == ["no such active key"] else 0


def cmd_history_purge(args: argparse.Namespace) -> int:
    _log_setup("ringback.history.purge")
    run_purge = _load("services.history.retention:run_purge")
    purged = run_purge(_settings("history"))
    print(f"purged {purged} events older than the retention period")
    return 0


def cmd_dev_reset(args: argparse.Namespace) -> int:
    from services.cli.devreset import run_reset

    return run_reset(yes=args.yes, keys=args.keys)


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from services.cli import outbox

    undelivered = [outbox.RowStatus.PENDING, outbox.RowStatus.DEAD]
    statuses = [outbox.RowStatus(s) for s in args.status] if args.status else undelivered
    return outbox.cmd_outbox_list(outbox.chosen(args.service), statuses, args.limit)


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from services.cli import outbox

    return outbox.cmd_outbox_replay(outbox.chosen(args.service), args.row_id, args.all_dead)


def cmd_run(args: argparse.Namespace) -> int:
    from services.cli.runner import run_all

    return run_all()


def cmd_demo(args: argparse.Namespace) -> int:
    from services.cli.demo import run_demo

    return run_demo(timeout=args.timeout, language=args.language)


_CAPACITY_CSV = """\
The CSV (UTF-8, a header row, then one row per stretch of opening hours):

  day,from,to,agents
  mon,08:00,12:00,3          Mondays 08-12, 3 agents on duty
  mon,12:00,16:00,2          ... 12-16 with 2 (touching rows join into one stretch)
  2026-12-24,08:00,12:00,1   a date of its own: replaces that weekday's hours
  2026-12-25,closed,,        a holiday: closed all day

day: mon..sun, or a date (YYYY-MM-DD). from/to: local HH:MM on slot boundaries
(to may be 24:00). agents: agents on duty; staffing may change only on whole hours.
A weekday without rows is closed. Blank lines and lines starting with # are ignored.
Errors name the line. The plan replaces the stored one as a whole.
"""

_MAIN_EPILOG = """\
examples:
  ringback run                                   everything, as `make run` does
  ringback api-key create --scope admin --name ops | tail -n 1
  ringback inbound list --status rejected
  ringback outbox list --status dead
  ringback capacity import plan.csv --dry-run
  ringback agent add anna --name "Anna Virtanen" --queue billing --language fi

`ringback COMMAND --help` explains each command. Configuration is read from RINGBACK_*
environment variables (docs/configuration.md); the REST API is described in docs/api.md.
"""


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return number


def _admin_options(parser: argparse.ArgumentParser, service: str) -> None:
    """Where the service is and the admin key to use, shared by the REST-calling commands."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        help=f"{service}'s base URL (default: RINGBACK_{service.upper()}_URL, "
        f"else http://127.0.0.1:RINGBACK_{service.upper()}_PORT)",
    )
    group.add_argument(
        "--api-key",
        help="a key with scope admin (default: RINGBACK_ADMIN_API_KEY; prefer the variable, "
        "a command line is visible to other users of the machine)",
    )
    group.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")


def _admin(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a REST-calling command; a failure becomes its message on stderr and exit code."""

    def run(args: argparse.Namespace) -> int:
        from services.cli.admin import CliFailure

        try:
            return handler(args)
        except CliFailure as exc:
            print(str(exc), file=sys.stderr)
            return exc.code

    return run


def build_parser() -> argparse.ArgumentParser:
    from services.cli import admin as cli_admin

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="ringback",
        description="ringback: nobody who tried to reach us is forgotten.",
        epilog=_MAIN_EPILOG,
        formatter_class=formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int] | None, help_: str, **extra: Any
    ) -> Any:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=formatter, **extra)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p

    add(
        "run",
        cmd_run,
        "start every service, the worker and the intake relay (what `make run` does)",
    )
    serve = add("serve", cmd_serve, "serve one API: intake, callback or history")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("--host", default=os.environ.get("RINGBACK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: RINGBACK_<SERVICE>_PORT")
    add("worker", cmd_worker, "run callback's arq worker (notifications, sweeper, event relay)")
    # `relay` was its name before the worker got a relay of its own; kept for old deployments.
    add(
        "intake-relay",
        cmd_relay,
        "forward intake's outbox to callback and history",
        aliases=["relay"],
    )
    add("migrate", cmd_migrate, "apply every component's database migrations")
    add(
        "history-purge",
        cmd_history_purge,
        "purge history events older than RINGBACK_HISTORY_RETENTION_DAYS (also runs in history)",
    )
    keys = add(
        "api-key",
        cmd_api_key,
        "create, list or revoke API keys (straight in the database)",
        epilog="examples:\n"
        "  ringback api-key create --scope admin --name ops | tail -n 1\n"
        "  ringback api-key create --scope history:read --scope callbacks:read --name agent-ui\n"
        "  ringback api-key create --agent anna --scope callbacks:read --scope callbacks:write \\\n"
        "      --scope history:read --name anna-desk\n"
        "  ringback api-key list\n"
        "  ringback api-key revoke KEY_ID\n\n"
        "Scopes: intake:write, callbacks:read, callbacks:write, history:read, history:write,\n"
        "admin (implies all), internal. A key made with --agent acts only as that agent\n"
        "(agent_id may be left out of its requests; naming another agent is refused); reads\n"
        "are not restricted. admin and internal keys act for every agent and cannot be bound.\n"
        "Uses RINGBACK_DATABASE_URL, else the embedded database.",
    )
    key_sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = key_sub.add_parser("create", help="create a key; prints it alone on the last line")
    create.add_argument("--scope", action="append", required=True, help="repeat for more scopes")
    create.add_argument("--name", default="unnamed")
    create.add_argument(
        "--agent",
        metavar="AGENT_ID",
        help="bind the key to one agent: it acts only as that agent "
        "(refused with admin or internal)",
    )
    key_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")

    inbound = add(
        "inbound",
        None,
        "list or replay what intake received (webhooks, contact requests); needs an admin key",
        epilog="examples:\n"
        "  export RINGBACK_ADMIN_API_KEY=$(ringback api-key create --scope admin | tail -n 1)\n"
        "  ringback inbound list --status rejected --provider generic --limit 20\n"
        "  ringback inbound replay 0193f1c2-...   # parse a rejected record again, record it",
    )
    inbound_sub = inbound.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = inbound_sub.add_parser(
        "list",
        help="inbound records, newest first, as a table (no bodies, no personal data)",
        description="Inbound records, newest first: id, time received, provider, kind, status\n"
        "and, for rejected ones, why. Calls GET /v1/inbound on intake.",
        formatter_class=formatter,
    )
    listing.add_argument(
        "--status",
        choices=["accepted", "recorded", "duplicate", "rejected", "replayed"],
        help="only records with this status",
    )
    listing.add_argument("--provider", help="only this provider (generic, twilio, cti, api, ...)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-500; 50)")
    listing.add_argument("--cursor", help="the next page (printed under a full page)")
    _admin_options(listing, "intake")
    listing.set_defaults(handler=_admin(cli_admin.cmd_inbound_list))
    replay = inbound_sub.add_parser(
        "replay",
        help="parse a rejected record again with today's code and record it",
        description="Parse a rejected inbound record again with the current code and record it\n"
        "like a fresh delivery (POST /v1/inbound/ID/replay on intake). Only rejected records\n"
        "can be replayed; one that still does not parse says why.",
        formatter_class=formatter,
    )
    replay.add_argument("inbound_id", metavar="ID", help="the record's id (from `inbound list`)")
    _admin_options(replay, "intake")
    replay.set_defaults(handler=_admin(cli_admin.cmd_inbound_replay))

    outbox = add(
        "outbox",
        None,
        "list the services' outbox rows, or give dead ones back to the relay (in the database)",
        epilog="examples:\n"
        "  ringback outbox list --status dead\n"
        "  ringback outbox list --service intake --status pending --limit 20\n"
        "  ringback outbox replay 42 --service intake\n"
        "  ringback outbox replay --all-dead\n\n"
        "Intake, callback and history each forward through an outbox of their own. A row is\n"
        "pending until its peer acknowledges it (delivered); one the peer refuses for good\n"
        "(a 4xx) is dead and no longer tried. Fix what the peer refused, then replay it.\n"
        "Payloads hold personal data and are never shown.\n"
        "Uses RINGBACK_DATABASE_URL (and RINGBACK_<SERVICE>_DATABASE_URL), else the embedded "
        "database.",
    )
    outbox_sub = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    outbox_services = sorted(SERVICES)
    outbox_list = outbox_sub.add_parser(
        "list",
        help="outbox rows, newest first, as a table (never the payload)",
        description="Outbox rows, newest first: id, service, where the row goes, status,\n"
        "attempts, the last error and when it was written. Without --status: the rows not\n"
        "delivered yet (pending and dead).",
        formatter_class=formatter,
    )
    outbox_list.add_argument("--service", choices=outbox_services, help="only this outbox")
    outbox_list.add_argument(
        "--status",
        action="append",
        choices=[str(status) for status in OutboxRowStatus],
        help="only rows with this status (repeat for more; default: pending and dead)",
    )
    outbox_list.add_argument(
        "--limit", type=_positive, default=50, help="at most this many per outbox (50)"
    )
    outbox_list.set_defaults(handler=cmd_outbox_list)
    outbox_replay = outbox_sub.add_parser(
        "replay",
        help="put a dead row (or every dead row) back to pending, for the relay to deliver",
        description="Put a dead outbox row back to pending, due now; the relay delivers it as\n"
        "any other. Only dead rows are replayed: a pending row is still being tried, a\n"
        "delivered one arrived, and one withdrawn by an erasure stays dead.",
        formatter_class=formatter,
    )
    which = outbox_replay.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "row_id", metavar="ID", type=int, nargs="?", help="the row's id (from `outbox list`)"
    )
    which.add_argument("--all-dead", action="store_true", help="every dead row")
    outbox_replay.add_argument(
        "--service",
        choices=outbox_services,
        help="the outbox the row is in (needed when the id is in more than one)",
    )
    outbox_replay.set_defaults(handler=cmd_outbox_replay)

    capacity = add(
        "capacity",
        None,
        "import the capacity plan (opening hours and staffing) from a CSV, or show it",
        epilog=_CAPACITY_CSV,
    )
    capacity_sub = capacity.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = capacity_sub.add_parser(
        "import",
        help="replace the capacity plan with the one in a CSV",
        description="Build the capacity plan from a CSV a supervisor edits, PUT it to callback\n"
        "(/v1/capacity), then print the plan as stored.",
        epilog=_CAPACITY_CSV + "\nexamples:\n"
        "  ringback capacity import plan.csv --dry-run       # check it, print the JSON body\n"
        "  ringback capacity import plan.csv --slot-minutes 30 --per-agent 2",
        formatter_class=formatter,
    )
    load.add_argument("file", metavar="FILE.csv")
    load.add_argument(
        "--timezone",
        default=os.environ.get("RINGBACK_SITE_TIMEZONE", "Europe/Helsinki"),
        help="IANA zone the hours are in (default: RINGBACK_SITE_TIMEZONE, else Europe/Helsinki)",
    )
    load.add_argument(
        "--slot-minutes",
        type=int,
        choices=[5, 10, 15, 20, 30, 60],
        default=15,
        help="length of a bookable slot (default: 15)",
    )
    load.add_argument(
        "--per-agent",
        type=int,
        default=1,
        metavar="N",
        help="callbacks one agent takes per slot (1-100; default: 1)",
    )
    load.add_argument(
        "--dry-run", action="store_true", help="check the CSV and print the body; send nothing"
    )
    _admin_options(load, "callback")
    load.set_defaults(handler=_admin(cli_admin.cmd_capacity_import))
    show = capacity_sub.add_parser(
        "show",
        help="print the stored capacity plan",
        description="Print the capacity plan callback has (GET /v1/capacity).",
    )
    show.add_argument("--json", action="store_true", help="the plan as JSON, as the API has it")
    _admin_options(show, "callback")
    show.set_defaults(handler=_admin(cli_admin.cmd_capacity_show))

    agent = add(
        "agent",
        None,
        "add, list or remove the agents callback routes to (/v1/agents); needs an admin key",
        epilog="examples:\n"
        "  export RINGBACK_ADMIN_API_KEY=$(ringback api-key create --scope admin | tail -n 1)\n"
        '  ringback agent add anna --name "Anna Virtanen" --queue billing --language fi\n'
        '  ringback agent add bjorn --name "Björn Lindqvist" --queue support --queue billing \\\n'
        "      --language sv --language fi --phone +46701234567\n"
        "  ringback agent list\n"
        "  ringback agent remove anna\n\n"
        "A known agent claims only from their queues, only callbacks in a language they speak\n"
        "(or one nobody knew, or after the queue's language wait), and only while available.\n"
        "An agent callback does not know is served from every queue, as before queues.",
    )
    agent_sub = agent.add_subparsers(dest="action", required=True, metavar="ACTION")
    agent_add = agent_sub.add_parser(
        "add",
        help="add an agent, or replace the one with this id (their presence is kept)",
        description="Add an agent to callback's roster (PUT /v1/agents/ID), or replace the one\n"
        "with this id as a whole: queues, languages, phone and SIP address not given are\n"
        "dropped. The presence is kept; a new agent starts offline until their console (or\n"
        "PUT /v1/agents/ID/presence) makes them available.",
        formatter_class=formatter,
    )
    agent_add.add_argument("agent_id", metavar="ID", help="1-64 letters, digits and ._@-")
    agent_add.add_argument("--name", required=True, help="the agent's name, as supervisors see it")
    agent_add.add_argument(
        "--queue",
        action="append",
        required=True,
        metavar="KEY",
        help="a queue the agent works (repeat for more; `ringback queue list` shows them)",
    )
    agent_add.add_argument(
        "--language",
        action="append",
        choices=LANGUAGES,
        help="a language the agent speaks (repeat for more; none: any language)",
    )
    agent_add.add_argument("--phone", metavar="E164", help="the number that rings for the agent")
    agent_add.add_argument("--sip", metavar="URI", help="the agent's SIP address (sip:...)")
    _admin_options(agent_add, "callback")
    agent_add.set_defaults(handler=_admin(cli_admin.cmd_agent_add))
    agent_list = agent_sub.add_parser(
        "list",
        help="every agent callback knows, as a table",
        description="Every agent on callback's roster (GET /v1/agents): id, name, queues,\n"
        "languages and presence. `-`: none (an agent without languages takes any).",
        formatter_class=formatter,
    )
    _admin_options(agent_list, "callback")
    agent_list.set_defaults(handler=_admin(cli_admin.cmd_agent_list))
    agent_remove = agent_sub.add_parser(
        "remove",
        help="forget an agent (DELETE /v1/agents/ID)",
        description="Forget an agent (DELETE /v1/agents/ID). Their callbacks and history stay;\n"
        "an agent id callback does not know is served from every queue again.",
        formatter_class=formatter,
    )
    agent_remove.add_argument("agent_id", metavar="ID")
    _admin_options(agent_remove, "callback")
    agent_remove.set_defaults(handler=_admin(cli_admin.cmd_agent_remove))

    queue = add(
        "queue",
        None,
        "list the queues callback has (/v1/queues); needs an admin key",
        epilog="Queues are created and changed with PUT /v1/queues/KEY (docs/api.md).",
    )
    queue_sub = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    queue_list = queue_sub.add_parser(
        "list",
        help="every queue, as a table",
        description="Every queue (GET /v1/queues): key, name, languages, the numbers it owns\n"
        "and the time zone in force (its own, else RINGBACK_SITE_TIMEZONE). `-`: none.",
        formatter_class=formatter,
    )
    _admin_options(queue_list, "callback")
    queue_list.set_defaults(handler=_admin(cli_admin.cmd_queue_list))

    from services.cli import staffing as cli_staffing

    staffing = add(
        "staffing",
        None,
        "agents needed per hour from observed demand, beside the queue's plan (§14)",
        epilog="Examples:\n"
        "  ringback staffing show billing\n"
        "  ringback staffing show billing --weeks 4 --apply\n\n"
        "docs/staffing.md explains the forecast and the model, with a worked example.",
    )
    cli_staffing.add_commands(staffing, formatter, connection=_admin_options, wrap=_admin)

    from services.cli import webhooks as cli_webhooks

    webhooks = add(
        "webhooks",
        None,
        "history's webhook endpoints: add, list, their deliveries, replay one (in the database)",
        epilog="Examples:\n"
        "  ringback webhooks add https://crm.example.com/hooks --event callback.completed\n"
        "  ringback webhooks list\n"
        "  ringback webhooks deliveries ENDPOINT_ID\n"
        "  ringback webhooks replay ENDPOINT_ID DELIVERY_ID\n\n"
        "Uses RINGBACK_DATABASE_URL (or RINGBACK_HISTORY_DATABASE_URL), else the embedded "
        "database.",
    )
    cli_webhooks.add_commands(webhooks, formatter)

    dev = add(
        "dev",
        None,
        "development helpers: `dev reset` starts again from empty data",
    )
    dev_sub = dev.add_subparsers(dest="action", required=True, metavar="ACTION")
    reset = dev_sub.add_parser(
        "reset",
        help="empty every table and ringback's Redis keys (development only)",
        description="Empty every table of the auth, intake, callback and history schemas (the\n"
        "migrations stay applied) and delete ringback's keys from Redis: arq's jobs, callback's\n"
        "queue and the abuse counters. API keys are kept unless --keys.\n\n"
        "Runs only in development: with RINGBACK_ENVIRONMENT=development, or with it unset\n"
        "against the embedded servers of `make run` under .data/. Anything else is refused.",
        formatter_class=formatter,
    )
    reset.add_argument("--yes", action="store_true", help="do not ask first")
    reset.add_argument("--keys", action="store_true", help="empty the API keys too")
    reset.set_defaults(handler=cmd_dev_reset)

    demo = add("demo", cmd_demo, "send a signed missed call to a running `make run` and show it")
    demo.add_argument("--timeout", type=float, default=30.0)
    demo.add_argument(
        "--language",
        choices=LANGUAGES,
        help="the caller's language, as their telephony system knows it (default: not known, "
        "so the site's RINGBACK_DEFAULT_LANGUAGE)",
    )
    return parser


# What a shell reports for a program its reader stopped listening to (128 + SIGPIPE).
CLOSED_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:
            # Here, not at exit, where a reader who went away (`| head`) can still be noticed;
            # also after `--help`, which leaves by SystemExit.
            sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # some other pipe or socket: a real failure, with its traceback
        # The rest of the output has nobody to read it: drop it quietly, as `cat` does, and
        # keep Python from complaining again when it flushes standard output at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return CLOSED_PIPE


def _stdout_closed() -> bool:
    """Whether nobody reads standard output any more: the pipe's reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    # A write that failed whole left nothing to flush; the pipe itself says it has no reader.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    return False


def _main(argv: Sequence[str] | None) -> int:
    from services.cli.admin import CliFailure

    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliFailure as exc:  # what the operator must fix, said plainly: no traceback
        print(str(exc), file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
