"""Keyset pagination: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out.

A cursor is the sort key of a page's last item, its parts joined and base64url-encoded. An
endpoint reads the `limit + 1` rows after the key `read_cursor` gives it, and `page_of` cuts
them into the page and the next page's cursor.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, overload

from fastapi import Query
from pydantic import BaseModel

from shared.errors import BadRequest

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="Opaque: `next_cursor` of the previous page.")
]

# The one answer to a cursor we did not make: the client drops it and reads from the start.
NOT_OUR_CURSOR = "The cursor is not valid; start again without it."

_SEPARATOR = "\x1f"
_BIGINT = 2**63

CursorPart = str | int | datetime


class Page(BaseModel, Generic[T]):
    """One page of a list; subclass it per item type to give the page a name in OpenAPI."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*parts: CursorPart) -> str:
    """An opaque cursor for the position after the last item of a page."""
    raw = _SEPARATOR.join(
        part.isoformat() if isinstance(part, datetime) else str(part) for part in parts
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The parts of a cursor made by `encode_cursor`, or a 400 problem for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # validate=True: characters outside the alphabet are an error, not silently skipped.
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True)
        values = decoded.decode().split(_SEPARATOR)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(NOT_OUR_CURSOR) from None
    if len(values) != parts:
        raise BadRequest(NOT_OUR_CURSOR)
    return values


# Parsers of one cursor part each, for `read_cursor`: a ValueError means not a part we made.


def row_id(part: str) -> str:
    """A row id: a UUID, written as `str(uuid)` writes it."""
    if str(uuid.UUID(part)) != part:
        raise ValueError(part)
    return part


def instant(part: str) -> datetime:
    """A moment with its UTC offset."""
    value = datetime.fromisoformat(part)
    if value.tzinfo is None:
        raise ValueError(part)
    return value


def sequence_number(part: str) -> int:
    """A PostgreSQL bigint sequence value (0 or more)."""
    if not part.isascii() or not part.isdigit() or int(part) >= _BIGINT:
        raise ValueError(part)
    return int(part)


@overload
def read_cursor(cursor: str, first: Callable[[str], A], /) -> tuple[A]: ...


@overload
def read_cursor(
    cursor: str, first: Callable[[str], A], second: Callable[[str], B], /
) -> tuple[A, B]: ...


def read_cursor(cursor: str, *parsers: Callable[[str], Any]) -> tuple[Any, ...]:
    """The sort key a cursor holds, one part per parser; a 400 problem if we did not make it."""
    parts = decode_cursor(cursor, len(parsers))
    try:
        return tuple(parse(part) for parse, part in zip(parsers, parts, strict=True))
    except ValueError:
        raise BadRequest(NOT_OUR_CURSOR) from None


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[CursorPart, ...]]
) -> tuple[list[T], str | None]:
    """A page of `rows` (read with `limit + 1`) and the cursor of the next one, if any.

    The extra row only tells that there is a next page; the cursor is the key of the page's
    last item, so the next page starts right after it.
    """
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    return items, encode_cursor(*key(items[-1]))
