"""`create_app(settings)`: callback's API."""

from __future__ import annotations

from fastapi import FastAPI

from services.callback import (
    ceilings,
    offer,
    staffing_api,
    survey_api,
    voicemail_api,
    wallboard_api,
)
from services.callback.api import ROUTERS
from services.callback.settings import CallbackSettings
from shared.contracts import CALLBACKS_BATCH
from shared.service_app import create_service_app


def create_app(settings: CallbackSettings) -> FastAPI:
    """The callback API for `settings` (nothing is built at import time)."""
    app = create_service_app(
        name="callback",
        settings=settings,
        routers=[
            *ROUTERS,
            staffing_api.router,
            offer.router,
            wallboard_api.router,
            survey_api.router,
            voicemail_api.router,
        ],
        peers=["history"],
        body_limits={CALLBACKS_BATCH.batch_path: settings.callback_batch_body_limit_bytes},
        description="Callback lifecycle, confirmations and the agent queue (DESIGN §4).",
        # The agent console (served by history) and other browser front ends call this API.
        cors_origins=settings.cors_allow_origins or (),
    )
    ceilings.register(app.state.registry, settings)
    return app
