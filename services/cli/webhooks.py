"""`ringback webhooks add|list|deliveries|replay`: history's webhook endpoints, in its database."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from services.cli.admin import CliFailure, _table
from shared.vocabulary import WebhookEventType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from services.history.settings import HistorySettings

T = TypeVar("T")


def _run(work: Callable[[AsyncSession, HistorySettings], Awaitable[T]]) -> T:
    """`work` in one committed session on history's database."""
    # Imported here: `ringback --help` and every other command need none of it.
    from services.cli.outbox import _databases, _in_session
    from services.history.settings import HistorySettings
    from shared.errors import ProblemError

    with _databases() as urls:
        url = urls["history"]
        settings = HistorySettings(database_url=url)

        async def unit(session: AsyncSession) -> T:
            try:
                result = await work(session, settings)
            except ProblemError as exc:
                raise CliFailure(f"error: {exc.detail}") from None
            await session.commit()
            return result

        return asyncio.run(_in_session(url, unit))


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def cmd_add(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from services.history import webhook_endpoints as endpoints

    try:
        body = endpoints.EndpointIn(
            url=args.url, events=args.event or ["*"], description=args.description
        )
    except ValidationError as exc:
        problems = "; ".join(error["msg"] for error in exc.errors(include_input=False))
        raise CliFailure(f"error: {problems}", 2) from None

    async def work(session: AsyncSession, settings: HistorySettings) -> Any:
        created, _ = await endpoints.create_endpoint(session=session, settings=settings, body=body)
        return created

    created = _run(work)
    print(f"endpoint {created.id} -> {created.url} ({', '.join(created.events)})")
    print("its signing secret, shown this once:")
    print(created.secret)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from services.history import webhook_endpoints as endpoints

    async def work(session: AsyncSession, settings: HistorySettings) -> Any:
        return await endpoints.list_endpoints(session=session, limit=args.limit)

    page = _run(work)
    if not page.items:
        print("no webhook endpoints")
        return 0
    rows = [
        [
            item.id,
            item.url,
            ",".join(item.events),
            "on" if item.enabled else f"off ({item.disabled_reason or 'by an operator'})",
            _when(item.failing_since),
        ]
        for item in page.items
    ]
    for line in _table(rows, ["ID", "URL", "EVENTS", "ENABLED", "FAILING SINCE (UTC)"]):
        print(line)
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    from services.history import webhook_endpoints as endpoints

    async def work(session: AsyncSession, settings: HistorySettings) -> Any:
        return await endpoints.list_deliveries(
            session=session, endpoint_id=args.endpoint_id, limit=args.limit
        )

    page = _run(work)
    if not page.items:
        print("no deliveries")
        return 0
    rows = [
        [
            str(item.id),
            item.event_type,
            item.status,
            str(item.attempts),
            str(item.last_status_code or "-"),
            _when(item.last_attempt_at),
            _when(item.next_attempt_at),
            (item.last_error or "")[:60],
        ]
        for item in page.items
    ]
    header = ["ID", "EVENT", "STATUS", "TRIES", "CODE", "LAST TRY (UTC)", "NEXT TRY", "ERROR"]
    for line in _table(rows, header):
        print(line)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from services.history import webhook_endpoints as endpoints

    async def work(session: AsyncSession, settings: HistorySettings) -> Any:
        return await endpoints.replay_delivery(
            session=session, endpoint_id=args.endpoint_id, delivery_id=args.delivery_id
        )

    replayed = _run(work)
    print(f"delivery {replayed.id} ({replayed.event_type}) is due again, same webhook-id")
    return 0


def add_commands(webhooks: argparse.ArgumentParser, formatter: Any) -> None:
    """The `webhooks` subcommands, on the parser `main` made for them."""
    sub = webhooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser(
        "add",
        help="subscribe a URL; prints the signing secret alone on the last line, once",
        description="Subscribe a URL to webhook events (DESIGN §12). Without --event: every\n"
        f"event. Event names: {', '.join(WebhookEventType)}.",
        formatter_class=formatter,
    )
    add.add_argument("url")
    add.add_argument("--event", action="append", help="an event name (repeat for more)")
    add.add_argument("--description")
    add.set_defaults(handler=cmd_add)
    listing = sub.add_parser("list", help="every endpoint, as a table (never the secret)")
    listing.add_argument("--limit", type=int, default=500)
    listing.set_defaults(handler=cmd_list)
    deliveries = sub.add_parser(
        "deliveries", help="an endpoint's deliveries, newest first (never the body)"
    )
    deliveries.add_argument("endpoint_id")
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.set_defaults(handler=cmd_deliveries)
    replay = sub.add_parser("replay", help="send one delivery again (same body, same webhook-id)")
    replay.add_argument("endpoint_id")
    replay.add_argument("delivery_id", type=int)
    replay.set_defaults(handler=cmd_replay)
