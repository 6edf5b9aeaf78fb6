"""Settings that several services read are declared once, in the common settings."""

from __future__ import annotations

import inspect
import itertools

import pytest
from pydantic_settings import BaseSettings

from services.callback.settings import CallbackSettings
from services.history.settings import HistorySettings
from services.intake.settings import IntakeSettings
from shared.settings import CommonSettings

SERVICES: list[type[BaseSettings]] = [IntakeSettings, CallbackSettings, HistorySettings]


def _declared(cls: type[BaseSettings]) -> set[str]:
    """The fields `cls` itself declares (not those it inherits)."""
    return set(inspect.get_annotations(cls))


@pytest.mark.parametrize("cls", SERVICES, ids=lambda cls: cls.__name__)
def test_a_service_does_not_declare_a_common_setting_again(cls: type[BaseSettings]) -> None:
    assert _declared(cls) & set(CommonSettings.model_fields) == set()


@pytest.mark.parametrize(
    ("one", "other"), list(itertools.combinations(SERVICES, 2)), ids=lambda cls: cls.__name__
)
def test_no_setting_is_declared_by_two_services(
    one: type[BaseSettings], other: type[BaseSettings]
) -> None:
    # A setting two services read belongs in CommonSettings: one type, one default, one doc row.
    assert _declared(one) & _declared(other) == set()


def test_every_service_reads_the_sms_allow_list_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGBACK_SMS_ALLOWED_REGIONS", "fi, no ,DK")
    intake, callback = IntakeSettings(), CallbackSettings()
    assert intake.sms_allowed_regions == callback.sms_allowed_regions == {"FI", "NO", "DK"}
