"""Every notation a person types resolves to one E.164 number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.phone import is_withheld, normalize, region_of


@pytest.mark.parametrize(
    "raw",
    [
        "040 123 4567",
        "+358 40 1234567",
        "0401234567",
        "040/1234567",
        "00358401234567",
        "+358-40-123-4567",
        "(040) 123 4567",
        " 040 123 4567 ",
    ],
)
def test_common_finnish_notations_give_the_same_number(raw: str) -> None:
    assert normalize(raw, "FI") == "+358401234567"


def test_the_default_region_decides_national_numbers() -> None:
    assert normalize("070 123 45 67", "SE") == "+46701234567"
    assert region_of("+46701234567") == "SE"


@pytest.mark.parametrize("raw", [None, "", "anonymous", "Restricted", "+", "0000", "12", "abc"])
def test_withheld_or_impossible_numbers_give_nothing(raw: str | None) -> None:
    assert normalize(raw, "FI") is None


def test_withheld_markers_are_recognised() -> None:
    assert is_withheld("anonymous")
    assert not is_withheld("+358401234567")


subscriber = st.integers(min_value=1_000_000, max_value=9_999_999)
separators = st.sampled_from(["", " ", "-", "/", "."])


@given(prefix=st.sampled_from(["40", "41", "44", "45", "50"]), number=subscriber, sep=separators)
def test_any_separator_and_prefix_style_normalises_alike(
    prefix: str, number: int, sep: str
) -> None:
    digits = str(number)
    expected = f"+358{prefix}{digits}"
    national = f"0{prefix}{sep}{digits[:3]}{sep}{digits[3:]}"
    international = f"+358{sep}{prefix}{sep}{digits}"
    assert normalize(national, "FI") == expected
    assert normalize(international, "FI") == expected
    assert normalize(expected, "SE") == expected, "an E.164 number ignores the default region"


@given(st.text(max_size=80))
def test_normalise_never_raises_and_returns_e164_or_none(raw: str) -> None:
    result = normalize(raw, "FI")
    assert result is None or (result.startswith("+") and result[1:].isdigit())
