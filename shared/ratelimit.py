"""Abuse limits in Redis: counters per phone, client IP and API key, all checked at once.

Keys are `ringback:ratelimit:<dimension>:<keyed hash>`: no phone number or address is ever
written to Redis in the clear. A window starts with its first request and lasts
`rate_limit_window_seconds`; the 429 says when it ends.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import TooManyRequests

log = structlog.get_logger("ringback.ratelimit")

PREFIX = "ringback:ratelimit:"

# Check every counter first and count only when all are under their limit, atomically, so a
# refused request uses up nothing and two concurrent requests cannot both take the last unit.
_SCRIPT = """
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    return {i, ttl}
  end
end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return {0, 0}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    dimension: str  # phone | email | ip | api_key | self_service_ip: a counter of its own each
    value: str
    per_window: int
    # How the 429 names it; empty: the dimension. Apart from the dimension so that a second
    # counter on the same thing (a client address) keeps its own key yet reads naturally.
    label: str = ""


class RateLimiter:
    def __init__(self, redis: Redis, *, window_seconds: int, secret: bytes) -> None:
        self.redis = redis
        self.window_ms = window_seconds * 1000
        self.secret = secret

    def key(self, limit: Limit) -> str:
        digest = hmac.new(self.secret, limit.value.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{PREFIX}{limit.dimension}:{digest}"

    async def hit(self, limits: Sequence[Limit], *, what: str = "contact requests") -> None:
        """Count one request against every limit, or raise a 429 naming the first one exceeded.

        `what` names the requests in the 429's text ("Too many <what> for this client IP").

        Redis being down lets the request through (logged): losing a customer's contact
        request is worse than a short window without limits.
        """
        if not limits:
            return
        keys = [self.key(limit) for limit in limits]
        args = [str(self.window_ms), *(str(limit.per_window) for limit in limits)]
        try:
            result = await self.redis.eval(_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc,unused-ignore]
        except (RedisError, OSError) as exc:
            log.warning("ratelimit.unavailable", error=type(exc).__name__)
            return
        index, ttl_ms = int(result[0]), int(result[1])
        if index == 0:
            return
        exceeded = limits[index - 1]
        retry_after = max(1, math.ceil(ttl_ms / 1000))
        label = exceeded.label or exceeded.dimension.replace("_", " ")
        raise TooManyRequests(
            f"Too many {what} for this {label}; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": exceeded.dimension},
        )
