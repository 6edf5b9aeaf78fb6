"""`POST /v1/inbound-sms` (§13): the SMS customers send us, forwarded by intake's relay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from services.callback import survey_replies
from services.callback.api import WorkDep
from shared.auth import require_scope
from shared.contracts import InboundSms
from shared.db import utcnow
from shared.routing import JsonRoute

router = APIRouter(
    prefix="/v1",
    tags=["surveys"],
    route_class=JsonRoute,
    dependencies=[Depends(require_scope("internal"))],
)


class InboundSmsResult(BaseModel):
    """What came of the message: `answered` (a survey score), `stopped`, `recorded`, `ignored`."""

    result: str
    survey_id: str | None = None
    score: int | None = None
    duplicate: bool = False


@router.post(
    "/inbound-sms",
    summary="An SMS a customer sent (a survey reply, STOP); read once per inbound id",
    response_model=InboundSmsResult,
)
async def inbound_sms(body: InboundSms, work: WorkDep) -> dict[str, Any]:
    return await survey_replies.receive(
        work.session, work.queue, settings=work.settings, message=body, now=utcnow()
    )
