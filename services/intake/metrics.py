"""Intake's own metrics, registered in the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.inbound = Counter(
            "ringback_intake_inbound_total",
            "Inbound requests stored, by provider and result.",
            ["provider", "status"],
            registry=registry,
        )
        self.unauthenticated = Counter(
            "ringback_intake_unauthenticated_total",
            "Webhooks refused before storage because their signature or token did not verify.",
            ["provider"],
            registry=registry,
        )
