"""docs/configuration.md names every setting of every settings class, and is current."""

from __future__ import annotations

import re

import pytest
from pydantic_settings import BaseSettings

from services.callback.settings import CallbackSettings
from services.cli.config_reference import DOC, render_markdown
from services.history.settings import HistorySettings
from services.intake.settings import IntakeSettings
from shared.settings import CommonSettings

CLASSES: list[type[BaseSettings]] = [
    CommonSettings,
    IntakeSettings,
    CallbackSettings,
    HistorySettings,
]


def documented() -> dict[str, str]:
    """Each variable in the doc's tables with its row."""
    rows = {}
    for line in DOC.read_text().splitlines():
        found = re.match(r"^\| `(RINGBACK_[A-Z0-9_]+)` \|", line)
        if found:
            rows[found.group(1)] = line
    return rows


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_setting_is_documented_with_a_meaning(cls: type[BaseSettings]) -> None:
    rows = documented()
    missing = [name for name in cls.model_fields if f"RINGBACK_{name.upper()}" not in rows]
    assert not missing, f"{cls.__name__} settings missing from docs/configuration.md: {missing}"
    for name in cls.model_fields:
        variable, default, meaning = rows[f"RINGBACK_{name.upper()}"].strip("|").split(" | ")[:3]
        assert default.strip(), variable
        assert len(meaning.strip()) > 10, variable


def test_the_defaults_in_the_doc_are_the_code_s() -> None:
    rows = documented()
    assert "| `8002` |" in rows["RINGBACK_CALLBACK_PORT"]
    assert "| `15,120` |" in rows["RINGBACK_RETRY_DELAYS_MINUTES"]
    assert "| `EE,FI,SE` |" in rows["RINGBACK_SMS_ALLOWED_REGIONS"]
    assert "| `file` |" in rows["RINGBACK_SMS_PROVIDER"]
    assert "one of `file`, `http`, `twilio`" in rows["RINGBACK_SMS_PROVIDER"]


def test_the_committed_doc_is_what_the_settings_generate() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/configuration.md is out of date: "
        "run `.venv/bin/python -m services.cli.config_reference > docs/configuration.md`"
    )
