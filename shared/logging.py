"""Structured logs: JSON lines for machines, coloured readable lines for a person at a terminal.

One event per line, dotted event names, request and trace ids bound, whichever renderer.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer


def configure_logging(*, level: str = "INFO", json: bool = True, process: str = "ringback") -> None:
    """Route structlog and stdlib logging (uvicorn, arq, alembic) through one JSON renderer."""
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks as data, without each frame's local variables: those hold the request
        # body, phone numbers and addresses, which no log line may carry.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=wants_colour(sys.stderr))
    )
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _add_process(process),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log prints full URLs, and query strings may carry phone numbers; our own
    # request log line carries the route template instead.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request's full URL at INFO: a forwarded self-service URL holds the
    # customer's token, and a provider URL may hold a credential in its query string.
    # aiohttp carries httpx's requests (shared.http_transport): held to the same.
    for name in ("httpx", "httpcore", "aiohttp"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "arq"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _add_process(process: str) -> structlog.types.Processor:
    def processor(
        _logger: object, _name: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event_dict.setdefault("process", process)
        return event_dict

    return processor


def wants_json(setting: str | None, stream: TextIO | None = None) -> bool:
    """JSON unless a person reads the lines: `RINGBACK_LOG_JSON` decides when it is set.

    Unset, JSON goes to anything but a terminal (a container's log, a file, a pipe), and
    readable lines go to a terminal. `ringback run` reads its children's pipes for a person at
    its own terminal, so it sets `RINGBACK_LOG_JSON=false` for them when it has one.
    """
    if setting is not None and setting.strip():
        return setting.strip().lower() not in {"0", "false", "no", "off"}
    return not _is_terminal(stream if stream is not None else sys.stderr)


def wants_colour(stream: TextIO, *, environ: Mapping[str, str] | None = None) -> bool:
    """Colours at a terminal, or when `FORCE_COLOR` asks; never when `NO_COLOR` is set.

    Both are common conventions (no-color.org, force-color.org); `ringback run` sets
    FORCE_COLOR for its children when its own output is a terminal.
    """
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    return _is_terminal(stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
