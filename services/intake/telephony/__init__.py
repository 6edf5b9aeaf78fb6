"""Inbound telephony formats: each turns one telephony system's request into `CallReport`s.

A new provider is one file implementing `base.Provider` and one line in `REGISTRY`.
"""

from __future__ import annotations

from typing import Any

from services.intake.telephony.base import Provider
from services.intake.telephony.cti import CtiProvider
from services.intake.telephony.generic import GenericProvider
from services.intake.telephony.twilio import TwilioProvider

REGISTRY: dict[str, Provider[Any]] = {
    provider.name: provider
    for provider in (
        GenericProvider(),
        TwilioProvider(),
        CtiProvider(),
    )
}
