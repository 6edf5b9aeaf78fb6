"""`create_app(settings)` for intake."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.api import webhooks
from services.intake.metrics import IntakeMetrics
from services.intake.settings import IntakeSettings
from shared.service_app import create_service_app


def create_app(settings: IntakeSettings) -> FastAPI:
    """Intake: verifies, normalises and durably stores everything that comes in."""
    app = create_service_app(
        name="intake",
        settings=settings,
        routers=[webhooks],
        peers=["callback", "history"],
        description="Missed-call webhooks and contact requests, stored before they are answered.",
    )
    app.state.intake_metrics = IntakeMetrics(app.state.registry)
    return app
