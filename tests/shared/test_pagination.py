from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import BadRequest
from shared.pagination import decode_cursor, encode_cursor


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
