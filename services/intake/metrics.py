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
        # By the limit's name (`self_service_ip`, `ip`, `phone`, `api_key`), never its value:
        # the counted address or number is personal data.
        self.rate_limited = Counter(
            "ringback_intake_rate_limited_total",
            "Requests refused with 429 by an abuse limit, by limit.",
            ["limit"],
            registry=registry,
        )
