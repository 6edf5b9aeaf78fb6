"""`POST /v1/voicemails` (from intake) and `GET /v1/voicemails/{id}/audio` (agents), §11."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from starlette.responses import StreamingResponse

from services.callback import repository, voicemails
from services.callback.api import SessionDep, SettingsDep, WorkDep
from services.callback.schemas import VoicemailOut
from shared.auth import require_scope
from shared.contracts import VoicemailIn
from shared.errors import NotFound
from shared.routing import JsonRoute

router = APIRouter(prefix="/v1/voicemails", tags=["voicemails"], route_class=JsonRoute)

VoicemailId = Annotated[str, Path(max_length=64)]


@router.post(
    "",
    summary="A voicemail a caller left, or its transcript: one per call; calls them back",
    dependencies=[Depends(require_scope("internal"))],
)
async def receive(body: VoicemailIn, work: WorkDep) -> voicemails.VoicemailReceived:
    return await voicemails.receive(
        session=work.session, settings=work.settings, data=body, queue=work.queue
    )


@router.get(
    "/{voicemail_id}",
    summary="A voicemail: when, how long, its transcript and where to play it",
    dependencies=[Depends(require_scope("callbacks:read", "internal"))],
)
async def get_voicemail(voicemail_id: VoicemailId, session: SessionDep) -> VoicemailOut:
    voicemail = await repository.get_voicemail(session, voicemail_id)
    if voicemail is None or voicemail.erased_at is not None:
        raise NotFound("No voicemail has this id.")
    return voicemails.view(voicemail)


@router.get(
    "/{voicemail_id}/audio",
    summary="Play a voicemail: its recording, streamed from the provider with our credentials",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/mpeg": {}}, "description": "The recording"},
        502: {"description": "The provider failed to hand it over"},
    },
    dependencies=[Depends(require_scope("callbacks:read"))],
)
async def audio(
    voicemail_id: VoicemailId, session: SessionDep, settings: SettingsDep
) -> StreamingResponse:
    voicemail = await repository.get_voicemail(session, voicemail_id)
    if voicemail is None or voicemail.erased_at is not None:
        raise NotFound("No voicemail has this id.")
    return await voicemails.stream_audio(settings, voicemail)
