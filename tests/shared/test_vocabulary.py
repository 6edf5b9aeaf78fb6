"""The shared words are spelled once: no status or outcome literal outside the vocabulary."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from shared.vocabulary import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    AttemptOutcome,
    CallbackStatus,
    ClosingOutcome,
    NotificationStatus,
)

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = ROOT / "shared" / "vocabulary.py"
# Every status and outcome word.
SPELLED_ONCE = {
    str(word) for word in (*CallbackStatus, *AttemptOutcome, *ClosingOutcome, *NotificationStatus)
}
# The same words where they belong to another vocabulary, each with the reason. A path ending
# in "/" covers its folder. Anything not listed here is a literal to replace with an enum.
OTHER_VOCABULARIES: dict[tuple[str, str], str] = {
    ("services/intake/telephony/", "*"): "the telephony formats' own words, as providers send them",
    ("services/cli/demo.py", "no_answer"): "the generic webhook format's call status",
    ("services/intake/dialing.py", "*"): "Twilio's call statuses, as Twilio sends them",
    ("shared/twiml.py", "completed"): "a Twilio status callback event's name",
    ("services/callback/models.py", "do_not_call"): "a table's name",
    ("services/callback/models.py", "cancelled"): "NotificationKind: what a message is about",
    ("services/callback/models.py", "erased"): "the recipient an erased person's rows keep",
    ("services/callback/repository.py", "sent"): "a CTE's name in the send statement",
    ("services/callback/schemas.py", "completed"): "AnsweredCallResult, an API answer's word",
    ("services/callback/inbound.py", "completed"): "AnsweredCallResult, an API answer's word",
    ("services/callback/schemas.py", "queued"): "AcknowledgementResult, an API answer's word",
    ("services/callback/inbound.py", "queued"): "AcknowledgementResult, an API answer's word",
    ("services/callback/selfservice.py", "expired"): "a self-service token's check result",
    ("services/callback/selfservice_actions.py", "expired"): "a token's check result",
    ("services/callback/selfservice_page.py", "cancelled"): "the page's done-message key",
    ("services/callback/templates.py", "cancelled"): "a message kind's label in the SMS budget",
    ("services/history/stats.py", "completed"): "a field of CallbackCounts",
    ("services/history/stats.py", "failed"): "a field of CallbackCounts",
    ("services/history/stats.py", "expired"): "a field of CallbackCounts",
    ("services/intake/repository.py", "erased"): "what an erased inbound record says it is",
    ("shared/service_app.py", "failed"): "the readiness answer's list of failed checks",
    ("shared/outbox.py", "erased"): "the payload an erasure leaves of an outbox row",
    ("services/history/repository.py", "sent"): "a bind parameter of the survey statement",
    ("services/intake/service.py", "voicemail"): "a telephony report's outcome (its `Outcome`)",
    ("services/intake/voicemail.py", "voicemail"): "the inbound summary's key; a spoken text's",
}


def _elsewhere(path: str, word: str) -> bool:
    return any(
        (path == where or (where.endswith("/") and path.startswith(where)))
        and listed in {word, "*"}
        for where, listed in OTHER_VOCABULARIES
    )


def _code_files() -> list[Path]:
    files = [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("shared").rglob("*.py")]
    return sorted(path for path in files if "migrations" not in path.parts and path != VOCABULARY)


def _literals(path: Path) -> list[tuple[int, str]]:
    """Every plain string literal in a file (docstrings excluded), with its line."""
    source = path.read_text()
    docstrings = {
        node.body[0].value.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.STRING or token.start[0] in docstrings:
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):  # an f-string: not a bare word
            continue
        if isinstance(value, str):
            found.append((token.start[0], value))
    return found


def test_no_status_or_outcome_is_spelled_outside_the_vocabulary() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in _code_files()
        for line, value in _literals(path)
        if value in SPELLED_ONCE and not _elsewhere(str(path.relative_to(ROOT)), value)
    ]
    assert not offenders, "use shared.vocabulary instead of:\n" + "\n".join(offenders)


def test_every_exception_is_still_needed() -> None:
    """An exception nobody needs any more would hide the next real literal there."""
    used = {
        (where, listed)
        for where, listed in OTHER_VOCABULARIES
        for path in _code_files()
        if str(path.relative_to(ROOT)) == where
        or (where.endswith("/") and str(path.relative_to(ROOT)).startswith(where))
        for _, value in _literals(path)
        if value in SPELLED_ONCE and listed in {value, "*"}
    }
    assert set(OTHER_VOCABULARIES) - used == set()


def test_the_check_finds_a_literal_when_there_is_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Doc: scheduled."""\nSTATUS = "scheduled"\nOTHER = f"{STATUS}"\n')
    assert [value for _, value in _literals(sample) if value in SPELLED_ONCE] == ["scheduled"]


@pytest.mark.parametrize("status", list(CallbackStatus))
def test_every_status_is_open_or_terminal(status: CallbackStatus) -> None:
    assert (status in OPEN_STATUSES) != (status in TERMINAL_STATUSES)


def test_every_attempt_outcome_but_rescheduling_can_close_a_callback() -> None:
    # A callback closes with the outcome of its last try (`ClosingOutcome(outcome)`); a
    # rescheduling never closes one: it sets the next time (§9).
    closing = {str(o) for o in AttemptOutcome} - {AttemptOutcome.RESCHEDULED}
    assert closing <= {str(o) for o in ClosingOutcome}
    assert AttemptOutcome.RESCHEDULED not in {str(o) for o in ClosingOutcome}
