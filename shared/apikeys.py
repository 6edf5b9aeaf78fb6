"""API keys: random, prefixed, stored as SHA-256 digests, scoped and revocable.

A key looks like `rb_<lookup>_<secret>`. `lookup` finds the row; the whole key is hashed and
compared in constant time. SHA-256 (not a slow password hash) is right here because the key
carries 190+ bits of randomness: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ARRAY, DateTime, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.agent_ids import AGENT_ID_MAX_LENGTH, AGENT_ID_RULE, is_agent_id
from shared.db import make_metadata, utcnow
from shared.ids import new_id

SCOPES = (
    "intake:write",
    "callbacks:read",
    "callbacks:write",
    "history:read",
    "history:write",
    "admin",
    "internal",
)
# Scopes that act for every agent by definition, so a key holding one is never bound to one.
UNBOUND_SCOPES = ("admin", "internal")
KEY_PREFIX = "rb"


class AuthBase(DeclarativeBase):
    metadata = make_metadata("auth")


class ApiKey(AuthBase):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    lookup: Mapped[str] = mapped_column(String(16), unique=True)
    digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # Set: the key is one agent's, and agent actions made with it act as that agent (DESIGN §9).
    agent_id: Mapped[str | None] = mapped_column(String(AGENT_ID_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as far as authorisation cares."""

    key_id: str
    name: str
    scopes: frozenset[str]
    agent_id: str | None = None

    def has_any(self, scopes: tuple[str, ...]) -> bool:
        # `admin` is the operator's key: it may do everything an agent or integration may.
        return "admin" in self.scopes or bool(self.scopes.intersection(scopes))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_key(key: str) -> str | None:
    """The lookup part of a well-formed key, else None."""
    parts = key.split("_", 2)  # the secret part may itself contain "_"
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or len(parts[2]) < 32:
        return None
    return parts[1]


def generate_key() -> tuple[str, str]:
    """A new (key, lookup) pair."""
    lookup = secrets.token_hex(6)
    return f"{KEY_PREFIX}_{lookup}_{secrets.token_urlsafe(32)}", lookup


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError("a key needs at least one scope")
    return sorted(set(scopes))


def validate_agent(agent_id: str | None, scopes: list[str]) -> str | None:
    """`agent_id` if a key with `scopes` may be bound to it (None: unbound); else ValueError."""
    if agent_id is None:
        return None
    if not is_agent_id(agent_id):
        raise ValueError(f"not a valid agent id: an agent id is {AGENT_ID_RULE}")
    unbound = [scope for scope in UNBOUND_SCOPES if scope in scopes]
    if unbound:
        raise ValueError(
            f"a key bound to an agent cannot have the scope {' or '.join(unbound)}: "
            "admin and internal keys act for every agent, so they are never bound to one"
        )
    return agent_id


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: list[str],
    key: str | None = None,
    key_id: str | None = None,
    agent_id: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a key (new unless given) and return it with the plaintext, which is never stored."""
    if key is None:
        key, lookup = generate_key()
    else:
        found = split_key(key)
        if found is None:
            raise ValueError("not a well-formed ringback key")
        lookup = found
    row = ApiKey(
        id=key_id or new_id(),
        name=name,
        lookup=lookup,
        digest=digest(key),
        scopes=validate_scopes(scopes),
        agent_id=validate_agent(agent_id, scopes),
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())


async def revoke_key(session: AsyncSession, *, key_id: str) -> bool:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


async def find_principal(session: AsyncSession, key: str) -> Principal | None:
    """The principal for `key`, or None if unknown, revoked or not matching."""
    lookup = split_key(key)
    if lookup is None:
        return None
    row = await session.scalar(
        select(ApiKey).where(ApiKey.lookup == lookup, ApiKey.revoked_at.is_(None))
    )
    if row is None or not hmac.compare_digest(row.digest, digest(key)):
        return None
    return Principal(
        key_id=row.id, name=row.name, scopes=frozenset(row.scopes), agent_id=row.agent_id
    )
