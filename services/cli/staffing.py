"""`ringback staffing show QUEUE [--weeks N] [--apply]`: agents needed beside the plan (§14)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from services.cli.admin import CliFailure, _say, _table, call, send

# A week, so `--apply` sees every weekday of the plan once.
DAYS = 7
# The parts of `GET /v1/queues/{key}` that are not `PUT`'s body.
_READ_ONLY = ("key", "effective_timezone", "created_at", "updated_at")


def add_commands(
    parser: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
    *,
    connection: Callable[[argparse.ArgumentParser, str], None],
    wrap: Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]],
) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser(
        "show",
        help="agents needed per hour for the next 7 days, beside the plan",
        description="Forecast, handle time, agents needed, planned and the gap, per local hour\n"
        "of the queue for the next 7 days (GET /v1/queues/QUEUE/staffing). Only hours with\n"
        "demand or staff are shown. --apply writes `needed` into the queue's plan per weekday\n"
        "and hour (PUT /v1/queues/QUEUE) after showing what changes; it needs an admin key.",
        formatter_class=formatter,
    )
    show.add_argument("queue", metavar="QUEUE")
    show.add_argument(
        "--weeks",
        type=int,
        default=8,
        choices=range(1, 53),
        metavar="N",
        help="weeks of observed demand the forecast reads (1-52; default: 8)",
    )
    show.add_argument(
        "--apply", action="store_true", help="write `needed` into the queue's capacity plan"
    )
    connection(show, "callback")
    show.set_defaults(handler=wrap(cmd_staffing_show))


def _queue_path(key: str) -> str:
    return f"/v1/queues/{quote(key, safe='')}"


def cmd_staffing_show(args: argparse.Namespace) -> int:
    queue: dict[str, Any] = call("GET", "callback", _queue_path(args.queue), args=args)
    zone = ZoneInfo(queue["effective_timezone"])
    today = datetime.combine(datetime.now(zone).date(), time(), zone)
    table: dict[str, Any] = call(
        "GET",
        "callback",
        f"{_queue_path(args.queue)}/staffing",
        args=args,
        params={
            "from": today.isoformat(),
            "to": (today + timedelta(days=DAYS)).isoformat(),
            "weeks": args.weeks,
        },
    )
    hours = [h for h in table["hours"] if h["forecast"] or h["needed"] or h["planned"]]
    _say(
        f"queue {table['queue']} ({table['timezone']}): {table['method']}, "
        f"{table['sla_share']:.0%} within {table['answer_within_minutes']:g} min, "
        f"handle time {table['handle_seconds']:g} s, forecast from {table['weeks']} weeks"
    )
    rows = [
        [
            h["local_hour"],
            f"{h['forecast']:g}",
            str(h["needed"]),
            f"{h['planned']:g}",
            f"{h['gap']:+g}",
        ]
        for h in hours
    ]
    for line in _table(rows, ["HOUR", "FORECAST", "NEEDED", "PLANNED", "GAP"]):
        _say(line)
    if not args.apply:
        return 0
    return _apply(args, queue, table, hours)


def _apply(
    args: argparse.Namespace,
    queue: dict[str, Any],
    table: dict[str, Any],
    hours: list[dict[str, Any]],
) -> int:
    plan = queue.get("capacity")
    if not plan:
        raise CliFailure(
            f"error: queue {queue['key']} has no capacity plan; give it business hours first "
            "(PUT /v1/queues/KEY with `capacity`, or `ringback capacity import` for default)"
        )
    agents: dict[str, dict[str, int]] = {
        day: {str(hour): count for hour, count in by_hour.items()}
        for day, by_hour in (plan.get("agents") or {}).items()
    }
    # The plan counts heads; a queue that gets part of its agents' time needs more heads.
    share = table["planned_share"]
    changes = []
    for hour in hours:
        heads = math.ceil(hour["needed"] / share - 1e-9)
        planned_heads = round(hour["planned"] / share)
        if heads == planned_heads:
            continue
        weekday, _, clock = hour["local_hour"].split(" ")
        agents.setdefault(weekday, {})[str(int(clock[:2]))] = heads
        changes.append(f"  {weekday} {clock}: {planned_heads} -> {heads} agents")
    if not changes:
        _say("the plan already has the agents needed; nothing to apply")
        return 0
    _say("applying to the plan (weekday and hour):")
    for line in changes:
        _say(line)
    body = {k: v for k, v in queue.items() if k not in _READ_ONLY}
    body["capacity"] = {**plan, "agents": agents}
    send("PUT", "callback", _queue_path(queue["key"]), args=args, body=body)
    _say(f"queue {queue['key']}: plan updated ({len(changes)} hours)")
    return 0
