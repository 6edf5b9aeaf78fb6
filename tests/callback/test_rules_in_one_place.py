"""Each callback rule in one place: statuses move in `lifecycle`, rows are made in `notify`."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import lifecycle
from services.callback.models import Callback
from shared.vocabulary import CallbackStatus, ClosingOutcome
from tests.callback.conftest import InsertCallbacks

CALLBACK = Path(__file__).resolve().parents[2] / "services" / "callback"


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(CALLBACK).as_posix(): ast.parse(path.read_text())
        for path in sorted(CALLBACK.rglob("*.py"))
        if "migrations" not in path.parts
    }


def _names_used(tree: ast.Module) -> set[str]:
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    return names


async def test_a_stored_callbacks_status_moves_only_through_lifecycle(
    insert_callbacks: InsertCallbacks, sessions: async_sessionmaker[AsyncSession]
) -> None:
    (callback_id,) = await insert_callbacks(1)
    async with sessions() as session:
        callback = await session.get(Callback, callback_id)
        assert callback is not None
        with pytest.raises(RuntimeError, match=r"lifecycle\.transition"):
            callback.status = CallbackStatus.CANCELLED
        assert callback.status == CallbackStatus.PENDING
        now = datetime.now(UTC)
        await lifecycle.transition(
            session,
            callback,
            CallbackStatus.CANCELLED,
            now=now,
            outcome=ClosingOutcome.CANCELLED_BY_AGENT,
            summary="Cancelled",
        )
        await session.commit()
    async with sessions() as session:
        stored = await session.get(Callback, callback_id)
        assert stored is not None
        assert (stored.status, stored.outcome) == ("cancelled", "cancelled_by_agent")


def test_only_lifecycle_may_lift_the_guard_or_update_callbacks_in_bulk() -> None:
    offenders = []
    for name, tree in _modules().items():
        if name not in {"lifecycle.py", "models.py"} and "moving_status" in _names_used(tree):
            offenders.append(f"{name}: moving_status")
        # A bulk UPDATE of callbacks would move statuses past the guard on the ORM attribute.
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "update"
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in {"Callback", "_callbacks"}
            ):
                offenders.append(f"{name}:{node.lineno}: update({node.args[0].id})")
    assert not offenders, offenders


def test_notification_rows_are_built_in_one_place() -> None:
    builders = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Notification"
            ):
                function = _enclosing_function(tree, node)
                builders.append(f"{name}:{function}")
    assert builders == ["notify.py:_row"]


def test_sql_statements_are_built_only_in_the_repository() -> None:
    statements = {"select", "update", "insert", "delete", "text", "exists"}
    allowed = {
        "repository.py": statements,
        # DDL: partial indexes' conditions.
        "models.py": {"text"},
        # The one claim rule, read by the repository's statement and by the worker's Python.
        "send_rule.py": {"exists"},
    }
    offenders = [
        f"{name}: {alias.name}"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
        if alias.name in statements and alias.name not in allowed.get(name, set())
    ]
    assert not offenders, offenders


def _enclosing_function(tree: ast.Module, target: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            child is target for child in ast.walk(node)
        ):
            return node.name
    return "<module>"
