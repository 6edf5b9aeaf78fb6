"""Bearer API keys for the REST API: 401 without a valid key, 403 without the scope, and
which agent a key acts as."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.apikeys import Principal, digest, find_principal
from shared.errors import Forbidden, Unauthorized, Unprocessable

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# The key id of the configured internal keys (services calling each other).
INTERNAL_KEY_ID = "internal"
_INTERNAL = Principal(key_id=INTERNAL_KEY_ID, name="internal", scopes=frozenset({"internal"}))


class KeyVerifier:
    """Resolves keys to principals, caching answers briefly so a request costs no query.

    A revoked key stops working within `cache_seconds`; the trade is stated in the README.
    The configured internal keys are checked against settings, so services can talk to each
    other before anyone has created a key. `internal_key` is one key or several: during a
    rotation every process accepts both the old key and the new one.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        internal_key: str | Sequence[str] | None,
        cache_seconds: float,
    ) -> None:
        self._sessions = session_factory
        keys = [internal_key] if isinstance(internal_key, str) else list(internal_key or ())
        self._internal_digests = tuple(digest(key) for key in keys if key)
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def verify(self, key: str) -> Principal | None:
        key_digest = digest(key)
        # Compared with every key, not up to the first match: the time taken says nothing
        # about which of them (if any) the caller holds.
        matches = [hmac.compare_digest(key_digest, known) for known in self._internal_digests]
        if any(matches):
            return _INTERNAL
        now = time.monotonic()
        hit = self._cache.get(key_digest)
        if hit and hit[0] > now:
            return hit[1]
        async with self._sessions() as session:
            principal = await find_principal(session, key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_digest] = (now + self._ttl, principal)
        return principal


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.", headers=_CHALLENGE)
    return token.strip()


def key_still_admits(request: Request, *scopes: str) -> Callable[[], Awaitable[bool]]:
    """For a response that outlives its request (a live stream): does its key still pass?

    The answer comes through the same verifier cache, so asking once per cache period costs
    at most one lookup per period, and a revoked key is noticed within that period.
    """
    verifier: KeyVerifier = request.app.state.key_verifier
    key = _bearer(request)

    async def still_admits() -> bool:
        principal = await verifier.verify(key)
        return principal is not None and principal.has_any(scopes)

    return still_admits


def require_scope(*scopes: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting callers whose key holds any of `scopes` (or `admin`)."""

    async def dependency(request: Request) -> Principal:
        verifier: KeyVerifier = request.app.state.key_verifier
        principal = await verifier.verify(_bearer(request))
        if principal is None:
            raise Unauthorized("The API key is unknown or revoked.", headers=_CHALLENGE)
        if not principal.has_any(scopes):
            wanted = ", ".join(scopes)
            raise Forbidden(f"This key lacks the scope for this action: one of {wanted}.")
        return principal

    return dependency


def acting_agent(
    principal: Principal,
    named: str | None,
    *,
    loc: tuple[str | int, ...] = ("body", "agent_id"),
) -> str:
    """The agent an action is recorded under: a bound key's own, else the one the request names.

    A key bound to an agent (DESIGN §9) acts only as that agent: naming it is optional, naming
    another is 403. Any other key (unbound agent desks, `admin`, `internal`, as in v1) acts for
    whichever agent the request names, so there a name is required: 422 at `loc` without one.
    """
    if principal.agent_id is not None:
        if named is not None and named != principal.agent_id:
            raise Forbidden(
                f"This key belongs to agent {principal.agent_id}; it cannot act as {named}."
            )
        return principal.agent_id
    if named is None:
        raise Unprocessable(
            "The request did not pass validation.",
            extra={
                "errors": [
                    {
                        "loc": list(loc),
                        "msg": "Field required: this key is not bound to an agent, "
                        "so the request must name one",
                    }
                ]
            },
        )
    return named
