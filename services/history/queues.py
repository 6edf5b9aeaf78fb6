"""Queues as history sees them (DESIGN §9): which queue an event is about, a queue's zone
and its goals.

History stores no queues: callback owns them. An event names its queue in `data.queue`, and
per-queue statistics ask callback (`GET /v1/queues/{key}`) for the queue's time zone and its
goals (§13), keeping the answer for a short while.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import structlog
from fastapi import FastAPI

from services.history.settings import HistorySettings
from shared.http import internal_client
from shared.service_app import Extension

log = structlog.get_logger("ringback.history")

# A queue key as callback accepts it in `PUT /v1/queues/{key}` (DESIGN §9).
QUEUE_KEY_MAX_LENGTH = 40
_QUEUE_KEY = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{QUEUE_KEY_MAX_LENGTH - 1}}}")
# The queue every callback belongs to when its events name none (stored before v2).
DEFAULT_QUEUE = "default"

# A stats request waits this long at most for callback before it falls back to the site zone.
_LOOKUP_TIMEOUT_SECONDS = 2.0
# A failed look-up is not repeated for this long, so a callback that is down costs one
# timeout per few seconds rather than one per stats request.
_FAILURE_CACHE_SECONDS = 5.0
# Only well-formed keys are looked up and kept; this bounds the cache all the same.
_MAX_CACHED = 1000


def is_queue_key(value: object) -> bool:
    """Whether `value` is a well-formed queue key."""
    # fullmatch: `$` would let a trailing newline through.
    return isinstance(value, str) and _QUEUE_KEY.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class QueueFacts:
    """What statistics need of a queue: its zone, and its `goals` as callback answered them
    (empty: none set, or callback could not say)."""

    zone: str
    goals: dict[str, Any] = field(default_factory=dict)


class QueueZones:
    """Each queue's time zone and goals as callback tells them, cached; the site zone and no
    goals when it cannot."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        site_zone: str,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.site_zone = site_zone
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[QueueFacts, float]] = {}

    async def zone_of(self, key: str) -> str:
        """The IANA zone of queue `key`: its own, else the site's (unknown queue, no answer)."""
        return (await self.facts_of(key)).zone

    async def facts_of(self, key: str) -> QueueFacts:
        """Queue `key`'s zone and goals: the site's zone and no goals when callback can't say."""
        if not is_queue_key(key):  # no such queue can exist: nothing to ask, nothing to keep
            return QueueFacts(self.site_zone)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        facts, lasting = await self._ask(key)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (facts, now + lasting)
        return facts

    async def _ask(self, key: str) -> tuple[QueueFacts, float]:
        """The queue's facts and how long to keep them."""
        failed = min(self.cache_seconds, _FAILURE_CACHE_SECONDS)
        try:
            response = await self.client.get(f"/v1/queues/{key}", timeout=_LOOKUP_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            log.warning("history.queue_zone.unavailable", queue=key, error=type(error).__name__)
            return QueueFacts(self.site_zone), failed
        if response.status_code == 404:  # deleted, or never made: the site's zone
            return QueueFacts(self.site_zone), self.cache_seconds
        body = _body_of(response) if response.status_code == 200 else None
        zone = _zone_in(body) if body is not None else None
        if body is None or zone is None:
            log.warning("history.queue_zone.unavailable", queue=key, status=response.status_code)
            return QueueFacts(self.site_zone), failed
        goals = body.get("goals")
        return QueueFacts(zone, goals if isinstance(goals, dict) else {}), self.cache_seconds


def _body_of(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _zone_in(body: dict[str, Any]) -> str | None:
    """The zone callback's queue answer names, if it names a valid one."""
    # `effective_timezone` is the zone in force; `timezone` alone may be null (site default).
    for name in ("effective_timezone", "timezone"):
        value = body.get(name)
        if isinstance(value, str) and _valid_zone(value):
            return value
    return None


def _valid_zone(name: str) -> bool:
    if len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def queue_zones_extension(settings: HistorySettings) -> Extension:
    """The app extension holding the client to callback and the zones cache."""

    @asynccontextmanager
    async def extension(app: FastAPI) -> AsyncIterator[None]:
        client = internal_client(settings, service="history", peer="callback")
        app.state.queue_zones = QueueZones(
            client,
            site_zone=settings.site_timezone,
            cache_seconds=settings.history_queue_zone_cache_seconds,
        )
        try:
            yield
        finally:
            await client.aclose()

    return extension
