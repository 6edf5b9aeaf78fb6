"""Provider adapters: each turns one telephony system's request into `CallReport`s.

A new provider is one file implementing `base.Provider` and one line in `REGISTRY`.
"""

from __future__ import annotations

from typing import Any

from services.intake.providers.base import Provider
from services.intake.providers.cti import CtiProvider
from services.intake.providers.generic import GenericProvider
from services.intake.providers.twilio import TwilioProvider

REGISTRY: dict[str, Provider[Any]] = {
    provider.name: provider
    for provider in (
        GenericProvider(),
        TwilioProvider(),
        CtiProvider(),
    )
}
