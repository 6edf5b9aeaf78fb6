"""History's settings: the common ones plus what only the contact log needs."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class HistorySettings(CommonSettings):
    """Configuration of the history service (`RINGBACK_*` environment variables)."""

    # Events older than this are purged by the retention job (DESIGN §5); two years by default.
    history_retention_days: int = Field(default=730, ge=1)
