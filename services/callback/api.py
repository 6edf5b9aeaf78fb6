"""Callback's REST API: thin routers over `service`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import service
from services.callback.queue import ArqNotificationQueue
from services.callback.schemas import CallbackCreated, CallbackDetail, CallbackList, CallbackStatus
from services.callback.settings import CallbackSettings
from shared.auth import require_scope
from shared.contracts import CallbackCreate
from shared.db import session_dependency
from shared.routing import JsonRoute


def _settings(request: Request) -> CallbackSettings:
    settings = request.app.state.settings
    assert isinstance(settings, CallbackSettings)
    return settings


def _queue(request: Request) -> ArqNotificationQueue:
    return ArqNotificationQueue(request.app.state.redis)


# The session commits before the response is sent, so a failed commit is a visible error.
SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
SettingsDep = Annotated[CallbackSettings, Depends(_settings)]
QueueDep = Annotated[ArqNotificationQueue, Depends(_queue)]

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"], route_class=JsonRoute)


@router.post(
    "",
    status_code=201,
    summary="Create a callback, or attach the contact to the number's open one",
    responses={200: {"model": CallbackCreated, "description": "Merged, or a repeated request"}},
    dependencies=[Depends(require_scope("callbacks:write", "internal"))],
)
async def create_callback(
    body: CallbackCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> CallbackCreated:
    outcome = await service.create_callback(
        session=session, settings=settings, data=body, queue=queue
    )
    response.status_code = outcome.status_code
    return outcome.result


@router.get(
    "",
    summary="List callbacks, newest first",
    dependencies=[Depends(require_scope("callbacks:read", "internal"))],
)
async def list_callbacks(
    session: SessionDep,
    settings: SettingsDep,
    status: CallbackStatus | None = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    due_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CallbackList:
    return await service.list_callbacks(
        session=session,
        settings=settings,
        status=status,
        phone=phone,
        due_before=due_before,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/{callback_id}",
    summary="One callback with its notifications",
    dependencies=[Depends(require_scope("callbacks:read", "internal"))],
)
async def get_callback(
    callback_id: Annotated[str, Path(max_length=64)],
    session: SessionDep,
) -> CallbackDetail:
    return await service.get_callback(session=session, callback_id=callback_id)
