"""`GET /v1/wallboard?queue=` (§13): one queue's figures as JSON, or live as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from services.callback import queues, wallboard
from services.callback.api import SessionDep, SettingsDep
from shared.auth import key_still_admits, require_scope
from shared.routing import JsonRoute

router = APIRouter(prefix="/v1", tags=["wallboard"], route_class=JsonRoute)

_SCOPES = ("callbacks:read",)
EVENT_STREAM = "text/event-stream"


@router.get(
    "/wallboard",
    summary="One queue's waiting callbacks, agents, today's SLA share and CSAT against the "
    "goals, and promises at risk; live with Accept: text/event-stream",
    dependencies=[Depends(require_scope(*_SCOPES))],
    response_model=wallboard.Wallboard,
    responses={200: {"content": {EVENT_STREAM: {}}}},
)
async def get_wallboard(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    queue: Annotated[str, Query(pattern=queues.KEY_PATTERN)] = queues.DEFAULT,
    accept: Annotated[str, Header(max_length=1000)] = "",
) -> Response | wallboard.Wallboard:
    # Read with the request's session first: an unknown queue is a 404, not an empty stream.
    board = await wallboard.wallboard(session=session, settings=settings, key=queue)
    if EVENT_STREAM not in accept.lower():
        return board
    body = wallboard.stream(
        sessions=request.app.state.session_factory,
        settings=settings,
        key=queue,
        first=board,
        still_admitted=key_still_admits(request, *_SCOPES),
    )
    return StreamingResponse(
        body,
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
