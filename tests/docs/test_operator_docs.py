"""The answers a newcomer and an operator looked for and did not find (issue #23) stay written.

Each check names what was missing; the behaviour behind it has its own test elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
API = (ROOT / "docs" / "api.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def _section(text: str, heading: str) -> str:
    """The body of the `## heading` section (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"no section '## {heading}'"
    return match.group(1)


def test_contact_requests_are_shown_with_the_scope_they_need() -> None:
    assert "POST /v1/contact-requests" in API
    assert "intake:write" in API
    assert re.search(r"curl [^\n]*/v1/contact-requests", API)


def test_the_self_service_api_is_documented_for_api_clients() -> None:
    assert "free_slots" in API
    assert '"action"' in API
    assert "rebook" in API


def test_backups_come_with_restore_steps() -> None:
    backups = _section(OPERATIONS, "Backups and restore")
    for step in ("pg_dump", "pg_restore", "ringback migrate"):
        assert step in backups, step


@pytest.mark.parametrize("credential", ["database", "SMTP", "Twilio", "internal", "self-service"])
def test_every_credential_has_rotation_steps(credential: str) -> None:
    assert credential.lower() in _section(OPERATIONS, "Rotating secrets").lower()


def test_dead_rows_and_notifications_have_their_commands_in_operations() -> None:
    assert "ringback outbox replay" in _section(OPERATIONS, "Dead outbox rows")
    assert "/v1/notifications/" in _section(OPERATIONS, "Dead notifications")


def test_the_batch_route_is_named_as_it_is() -> None:
    assert "/v1/events/batch" not in CONFIGURATION
