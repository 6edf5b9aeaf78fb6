"""The `ringback` command: run, serve, worker, relay, migrate, api-key, demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from shared.logging import configure_logging

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
    return _load(SERVICES[service][1])()


def _log_setup(process: str) -> None:
    level = os.environ.get("RINGBACK_LOG_LEVEL", "INFO")
    json_logs = os.environ.get("RINGBACK_LOG_JSON", "true").lower() not in {"0", "false", "no"}
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
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=20,
    )
    uvicorn.Server(config).run()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _log_setup("ringback.callback.worker")
    run_worker = _load("services.callback.worker:run_worker")
    settings = _settings("callback")
    run_worker(settings)
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    _log_setup("ringback.relay")
    run_relay = _load("services.intake.relay:run_relay")
    asyncio.run(run_relay(_settings("intake")))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.devstate import ensure_database_url
    from shared.migrate import upgrade_all
    from shared.settings import CommonSettings

    _log_setup("ringback.migrate")
    url, server = ensure_database_url()
    try:
        settings = CommonSettings(database_url=url)
        upgrade_all(settings.all_database_urls())
    finally:
        if server is not None:
            server.stop()
    print("migrations applied")
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    from shared.apikeys import validate_scopes
    from shared.devstate import ensure_database_url

    if args.action == "create":
        try:
            validate_scopes(args.scope or [])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    url, server = ensure_database_url()
    try:
        return asyncio.run(_api_key(args, url))
    finally:
        if server is not None:
            server.stop()


async def _api_key(args: argparse.Namespace, url: str) -> int:
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
                        session, name=args.name, scopes=args.scope, key=key, key_id=key_id
                    )
                    outcome = [f"created key {row.id} ({row.name}), scopes: {' '.join(row.scopes)}"]
                elif args.action == "list":
                    outcome = [
                        f"{row.id}  {'revoked' if row.revoked_at else 'active':8} "
                        f"{row.name:20} {' '.join(row.scopes)}"
                        for row in await list_keys(session)
                    ]
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


def cmd_run(args: argparse.Namespace) -> int:
    from shared.runner import run_all

    return run_all()


def cmd_demo(args: argparse.Namespace) -> int:
    from shared.demo import run_demo

    return run_demo(timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringback",
        description="ringback: nobody who tried to reach us is forgotten.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    add("run", cmd_run, "start every service, the worker and the relay (what `make run` does)")
    serve = add("serve", cmd_serve, "serve one API: intake, callback or history")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("--host", default=os.environ.get("RINGBACK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: RINGBACK_<SERVICE>_PORT")
    add("worker", cmd_worker, "run callback's arq worker (notifications, sweeper, event relay)")
    add("relay", cmd_relay, "forward intake's outbox to callback and history")
    add("migrate", cmd_migrate, "apply every component's database migrations")
    add(
        "history-purge",
        cmd_history_purge,
        "purge history events older than RINGBACK_HISTORY_RETENTION_DAYS (also runs in history)",
    )
    keys = add("api-key", cmd_api_key, "create, list or revoke API keys")
    key_sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = key_sub.add_parser("create", help="create a key; prints it alone on the last line")
    create.add_argument("--scope", action="append", required=True, help="repeat for more scopes")
    create.add_argument("--name", default="unnamed")
    key_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    demo = add("demo", cmd_demo, "send a signed missed call to a running `make run` and show it")
    demo.add_argument("--timeout", type=float, default=30.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
