"""History's settings: the common ones plus what only the contact log needs."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class HistorySettings(CommonSettings):
    """Configuration of the history service (`RINGBACK_*` environment variables)."""

    # Events older than this are purged by the retention job (DESIGN §5); two years by default.
    history_retention_days: int = Field(default=730, ge=1)
    # A full batch of 500 events is about 130 KB; the route allows this much, others the default.
    history_batch_body_limit_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
