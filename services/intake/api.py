"""Intake's HTTP surface: thin handlers over `service`."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import service
from services.intake.metrics import IntakeMetrics
from services.intake.providers import generic, standard_webhooks
from services.intake.providers.base import PayloadRejected
from services.intake.service import RawRequest
from services.intake.settings import IntakeSettings
from shared.contracts import Accepted
from shared.db import commit, session_dependency
from shared.errors import Forbidden, ProblemError, Unauthorized
from shared.jsonutil import ORJSONResponse
from shared.routing import is_json_media_type

log = structlog.get_logger("ringback.intake")

SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]

webhooks = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


def _metrics(request: Request) -> IntakeMetrics:
    metrics: IntakeMetrics = request.app.state.intake_metrics
    return metrics


@webhooks.post(
    "/generic",
    status_code=202,
    response_model=Accepted,
    summary="A call event in our signed JSON format (Standard Webhooks)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": generic.GenericCallEvent.model_json_schema()}
            },
        }
    },
)
async def generic_webhook(request: Request, session: SessionDep) -> ORJSONResponse:
    settings = _settings(request)
    secrets = settings.webhook_secret_list()
    if not secrets:
        raise Forbidden("Generic webhooks are not enabled: RINGBACK_WEBHOOK_SECRETS is not set.")
    body = await request.body()
    try:
        # Verified on the raw bytes, before anything is parsed.
        standard_webhooks.verify(
            secrets=secrets,
            headers=request.headers,
            body=body,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    except standard_webhooks.SignatureError as exc:
        _metrics(request).unauthenticated.labels("generic").inc()
        log.warning("intake.webhook.unauthenticated", provider="generic", reason=str(exc))
        raise Unauthorized(f"Webhook signature rejected: {exc}.") from None

    raw = RawRequest.capture(body, request.headers)
    try:
        if not is_json_media_type(raw.content_type):
            raise PayloadRejected("the body must be application/json", status=415)
        report = generic.parse(body)
    except PayloadRejected as exc:
        inbound_id = await service.record_rejected(
            session=session,
            provider="generic",
            kind="call",
            raw=raw,
            reason=exc.reason,
            body_limit=settings.rejected_body_limit_bytes,
        )
        # Kept before answering: the caller's bytes survive even though we say no.
        await commit(session)
        _metrics(request).inbound.labels("generic", "rejected").inc()
        log.info("intake.webhook.rejected", provider="generic", inbound_id=inbound_id)
        raise ProblemError(
            exc.reason[:1000],
            status=exc.status,
            title=_TITLES.get(exc.status, "Bad Request"),
            slug="rejected-payload",
            extra={"inbound_id": inbound_id},
        ) from None

    accepted = await service.record_call(
        session=session, report=report, raw=raw, region=settings.default_region
    )
    _metrics(request).inbound.labels("generic", accepted.status).inc()
    log.info(
        "intake.webhook.stored", provider="generic", inbound_id=accepted.id, status=accepted.status
    )
    return ORJSONResponse(accepted.model_dump(exclude_none=True), status_code=202)


_TITLES = {400: "Bad Request", 415: "Unsupported Media Type", 422: "Unprocessable Content"}
