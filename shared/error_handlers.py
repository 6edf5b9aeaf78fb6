"""Every failure of a FastAPI app answered as RFC 9457 problem+json, never a stack trace."""

from __future__ import annotations

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.db import database_unavailable
from shared.errors import MalformedJson, ProblemError, problem_response, validation_errors
from shared.redaction import route_of
from shared.settings import CommonSettings

log = structlog.get_logger("ringback.errors")


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        slug=exc.slug,
        instance=request.url.path,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        # FastAPI reports a body it cannot parse as a 422 "JSON decode error"; nothing in
        # it failed validation, the caller sent broken JSON: the 400 intake gives too.
        return await _on_problem(request, MalformedJson())
    return problem_response(
        status=422,
        title="Unprocessable Content",
        detail="The request did not pass validation.",
        slug="validation",
        instance=request.url.path,
        extra={"errors": validation_errors(errors)},
    )


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Payload Too Large",
        415: "Unsupported Media Type",
    }
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # FastAPI's answer to a JSON body that is not UTF-8 (a ValueError) or nested past
        # the parser's depth, "There was an error parsing the body", is the answer intake's
        # parser gives as malformed JSON: the same answer here.
        return await _on_problem(request, MalformedJson())
    title = titles.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and route_of(request.scope) == "unmatched":
        detail = _no_route(request)
    return problem_response(
        status=exc.status_code,
        title=title,
        detail=detail,
        slug=title.lower().replace(" ", "-"),
        instance=request.url.path,
        headers=exc.headers,
    )


def _no_route(request: Request) -> str:
    """The 404 detail when no route matched: the path asked for, and where the routes are.

    The path goes to the caller only, whose own request it is; it may hold a self-service
    token or a phone number, so nothing here logs it (logs name `route_of`: `unmatched`).
    """
    detail = f"No route matches {request.method} {request.url.path}."
    settings = getattr(request.app.state, "settings", None)
    if isinstance(settings, CommonSettings) and settings.docs_served():
        root = request.scope.get("root_path", "")
        detail += f" The routes this service serves are listed at {root}/docs."
    return detail


def _unavailable(request: Request, exc: Exception) -> Response:
    # PostgreSQL restarting or failing over is not a bug: nothing was stored, the caller
    # should retry, and the pool reconnects by itself once the server is back.
    log.warning(
        "http.database_unavailable", route=route_of(request.scope), error_type=type(exc).__name__
    )
    return problem_response(
        status=503,
        title="Service Unavailable",
        detail="The database is unavailable; nothing was stored. Try again shortly.",
        slug="unavailable",
        instance=request.url.path,
        headers={"Retry-After": "2"},
    )


async def _on_database_error(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):
        return _unavailable(request, exc)
    raise exc  # anything else is a bug: Starlette's last resort renders the 500 below


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):
        return _unavailable(request, exc)
    # A 500 is a bug: log it with the trace for us, answer without it for them.
    log.exception(
        "http.unhandled_error", route=route_of(request.scope), error_type=type(exc).__name__
    )
    return problem_response(
        status=500,
        title="Internal Server Error",
        detail="Something went wrong on our side; the request id identifies it in our logs.",
        slug="internal",
        instance=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to problem+json."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    # A database outage is a 503 (problem+json, Retry-After), answered here rather than by
    # Starlette's last-resort middleware, which re-raises what it renders into the server log.
    for database_error in _database_error_types():
        app.add_exception_handler(database_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)


def _database_error_types() -> tuple[type[Exception], ...]:
    # asyncpg's client-side errors are not `PostgresError`s; an outage can raise them too.
    return (
        SQLAlchemyError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        ConnectionError,
        TimeoutError,
        OSError,
    )
