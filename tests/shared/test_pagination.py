"""Keyset cursors: what we make reads back, anything else is a 400, pages end right."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import BadRequest
from shared.pagination import (
    NOT_OUR_CURSOR,
    decode_cursor,
    encode_cursor,
    instant,
    page_of,
    read_cursor,
    row_id,
    sequence_number,
)


# Cursor parts are timestamps, ids and numbers we made: text, never lone surrogates.
@given(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x1f"),
        max_size=40,
    ),
    st.integers(),
)
def test_cursor_round_trip(text: str, number: int) -> None:
    assert decode_cursor(encode_cursor(text, number), 2) == [text, str(number)]


@pytest.mark.parametrize("cursor", ["", "!!!", encode_cursor("a"), "zz"])
def test_foreign_cursors_are_a_400(cursor: str) -> None:
    with pytest.raises(BadRequest):
        decode_cursor(cursor, 2)


# Moved from the history tests when the timeline took up the shared cursor.
@given(
    occurred_at=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_a_time_and_sequence_key_round_trips(occurred_at: datetime, seq: int) -> None:
    cursor = encode_cursor(occurred_at, seq)
    assert read_cursor(cursor, instant, sequence_number) == (occurred_at, seq)


@given(st.text(max_size=200))
def test_any_other_cursor_is_refused_cleanly(cursor: str) -> None:
    try:
        at, seq = read_cursor(cursor, instant, sequence_number)
    except BadRequest as refused:
        problem: BadRequest | None = refused
    else:
        problem = None
        assert at.tzinfo is not None
        assert 0 <= seq < 2**63
    assert problem is None or problem.detail == NOT_OUR_CURSOR


@given(st.uuids())
def test_a_row_id_key_round_trips(value: uuid.UUID) -> None:
    assert read_cursor(encode_cursor(str(value)), row_id) == (str(value),)


@pytest.mark.parametrize(
    ("parts", "parsers"),
    [
        # A row id as `str(uuid)` never writes it: not a cursor we made.
        (("0190B7A0-0000-7000-8000-000000000000",), (row_id,)),
        (("{0190b7a0-0000-7000-8000-000000000000}",), (row_id,)),
        (("42",), (row_id,)),
        (("2026-11-01T08:00:00", 1), (instant, sequence_number)),  # no offset
        (("2026-11-01T08:00:00+00:00", -1), (instant, sequence_number)),
        (("2026-11-01T08:00:00+00:00", 2**63), (instant, sequence_number)),
        (("2026-11-01T08:00:00+00:00", "\u0661"), (instant, sequence_number)),  # Arabic one
        # One list's cursor handed to another.
        (("0190b7a0-0000-7000-8000-000000000000",), (instant, sequence_number)),
    ],
)
def test_parts_we_never_write_are_a_400(
    parts: tuple[str | int, ...], parsers: tuple[Callable[[str], object], ...]
) -> None:
    with pytest.raises(BadRequest, match="start again without it"):
        read_cursor(encode_cursor(*parts), *parsers)


def test_a_full_page_has_the_cursor_of_its_last_item() -> None:
    rows = [10, 9, 8, 7]  # read with limit + 1
    items, cursor = page_of(rows, 3, lambda row: (row,))
    assert items == [10, 9, 8]
    assert cursor is not None
    assert decode_cursor(cursor, 1) == ["8"]


@pytest.mark.parametrize("rows", [[], [10], [10, 9, 8]])
def test_the_last_page_has_no_cursor(rows: list[int]) -> None:
    assert page_of(rows, 3, lambda row: (row,)) == (rows, None)
