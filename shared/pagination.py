"""Keyset pagination: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from shared.errors import BadRequest

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, at most 500).")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="Opaque: `next_cursor` of the previous page.")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*parts: str | int) -> str:
    """An opaque cursor for the position after the last item of a page."""
    raw = "\x1f".join(str(part) for part in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The parts of a cursor made by `encode_cursor`, or a 400 problem for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # validate=True: characters outside the alphabet are an error, not silently skipped.
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True)
        values = decoded.decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("The cursor is not one this API made.") from None
    if len(values) != parts:
        raise BadRequest("The cursor is not one this API made.")
    return values
