"""Every notation a person types resolves to one E.164 number, the same in every service."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.callback import inputs as callback_inputs
from services.callback.settings import CallbackSettings
from services.history.service import identity_pairs
from services.intake.service import call_outcome
from services.intake.settings import IntakeSettings
from services.intake.telephony.base import CallReport
from shared.contracts import CustomerRef
from shared.errors import Unprocessable
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


def test_a_pbx_number_without_plus_is_read_as_international() -> None:
    # The README's own example: a CTI system sends `from` without `+` or `00`.
    assert normalize("493023125741", "FI") == "+493023125741"
    assert normalize("46701234567", "FI") == "+46701234567"
    # A national number of the default region still wins, and short digit strings stay local.
    assert normalize("401234567", "FI") == "+358401234567"
    assert normalize("1234567", "FI") is None


# --- every service applies the same rule ------------------------------------------------

REGIONS = ("FI", "SE", "EE", "DE")


@functools.cache
def _intake_settings(region: str) -> IntakeSettings:
    return IntakeSettings(default_region=region)


@functools.cache
def _callback_settings(region: str) -> CallbackSettings:
    return CallbackSettings(default_region=region)


def intake_caller(raw: str, region: str) -> str | None:
    """The caller's number intake stores and forwards for a call from `raw`."""
    report = CallReport(
        provider="generic",
        call_id="call-1",
        outcome="missed",
        caller=raw,
        callee=None,
        occurred_at=datetime(2026, 11, 24, 12, tzinfo=UTC),
        status="no_answer",
    )
    outcome = call_outcome(
        settings=_intake_settings(region), report=report, inbound_id="inbound-1", summary={}
    )
    return outcome.phone


def callback_customer(raw: str, region: str) -> str | None:
    """The number callback stores for a callback requested for `raw` (None: its 422)."""
    try:
        return callback_inputs.phone(raw, _callback_settings(region), ["body", "phone"])
    except Unprocessable:
        return None


def history_identity(raw: str, region: str) -> str | None:
    """The phone identity history files an event for `raw` under, and searches by (None: 422)."""
    try:
        customer = CustomerRef(phone=raw)
    except ValidationError:
        # The contract refuses it (NUL, ...): history answers 422 and files nothing.
        return None
    pairs = dict(identity_pairs(customer, region=region))
    return pairs.get("phone")


def _forms(number: phonenumbers.PhoneNumber) -> list[str]:
    """A number as people, web forms and PBXs write it."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return [
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        e164,
        "00" + e164[1:],
        e164[1:],
    ]


@st.composite
def numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """FI, SE, EE and DE mobile and fixed-line numbers (valid or not) near real ones."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example_number = phonenumbers.example_number_for_type(region, kind)
    assert example_number is not None
    national = str(example_number.national_number)
    keep = draw(st.integers(min_value=2, max_value=len(national)))
    tail = draw(st.text("0123456789", min_size=0, max_size=len(national) - keep + 2))
    return phonenumbers.PhoneNumber(
        country_code=example_number.country_code, national_number=int(national[:keep] + tail)
    )


garbage = st.one_of(
    st.text(max_size=32),
    st.text("0123456789 +-()/.", max_size=32),
    st.sampled_from(["anonymous", "Restricted", "+", "00", "0000", "12", "abc", "+358"]),
)
corpus = st.one_of(numbers().flatmap(lambda n: st.sampled_from(_forms(n))), garbage)


@given(raw=corpus, region=st.sampled_from(REGIONS))
@example(raw="493023125741", region="FI")
@example(raw="0401234567", region="FI")
@example(raw="+46 70 123 45 67", region="EE")
@example(raw="\x00", region="FI")  # the contracts refuse NUL: every service says no
def test_intake_callback_and_history_agree_on_every_number(raw: str, region: str) -> None:
    expected = normalize(raw, region)
    assert intake_caller(raw, region) == expected
    assert callback_customer(raw, region) == expected
    assert history_identity(raw, region) == expected


@given(number=numbers(), region=st.sampled_from(REGIONS))
def test_a_valid_number_is_one_number_in_every_international_form(
    number: phonenumbers.PhoneNumber, region: str
) -> None:
    national, international, e164, zeros, _ = _forms(number)
    if not phonenumbers.is_valid_number(number):
        assert normalize(e164, region) is None
        return
    assert normalize(international, region) == e164
    assert normalize(zeros, region) == e164
    assert normalize(e164, region) == e164
    home = phonenumbers.region_code_for_number(number)
    assert home is not None
    assert normalize(national, home) == e164
