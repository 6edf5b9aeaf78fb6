"""History's settings: the common ones plus what only the contact log needs."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import CommonSettings


class HistorySettings(CommonSettings):
    """Configuration of the history service (`RINGBACK_*` environment variables)."""

    # Events older than this are purged by the retention job (DESIGN §5); two years by default.
    history_retention_days: int = Field(default=730, ge=1)
    # The retention job: on or off, how often, how many events per delete statement.
    history_purge_enabled: bool = True
    history_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    history_purge_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # Monthly partitions of the events (docs/history.md): a periodic task creates this many
    # months past the current one, so ingest never waits on DDL at a month's turn.
    history_partitions_enabled: bool = True
    history_partitions_interval_seconds: float = Field(default=3600.0, gt=0)
    history_partitions_months_ahead: int = Field(default=3, ge=1, le=24)
    # How long creating a partition may wait for its lock (a long statistics query holds
    # one) before it gives up: the task tries again next run, ingest leaves the rows in
    # the default partition, which the task splits out later.
    history_partitions_lock_timeout_ms: int = Field(default=2000, ge=10, le=60_000)
    # A full batch of 500 events is about 130 KB; the route allows this much, others the default.
    history_batch_body_limit_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    # The live stream: a comment line this often keeps proxies from closing an idle stream.
    history_stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Wake-ups one stream may have waiting; past it the stream catches up from the database.
    history_stream_queue_size: int = Field(default=64, ge=1, le=10_000)
    # Without a LISTEN connection (database restarting) streams look for new events this often.
    history_stream_poll_seconds: float = Field(default=5.0, gt=0)
    # The erasure relay (history's outbox to callback and intake) runs inside the app.
    history_erasure_relay_enabled: bool = True
    history_relay_poll_seconds: float = Field(default=1.0, gt=0)
    # Per-queue statistics ask callback for the queue's time zone and keep it this long: a
    # zone changed in callback shows in history's figures within it.
    history_queue_zone_cache_seconds: float = Field(default=60.0, ge=0)
    # Webhooks out (DESIGN §12): the relay runs inside the app, beside the request path.
    history_webhook_relay_enabled: bool = True
    # Requests in flight to one subscriber, and in all, per process; each is cut off after
    # the timeout, so a subscriber that hangs holds at most its own slots that long.
    history_webhook_per_endpoint: int = Field(default=4, ge=1, le=64)
    history_webhook_max_in_flight: int = Field(default=64, ge=1, le=1000)
    history_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # The delivery log (and the snapshots it holds) is kept this long, then deleted.
    history_webhook_keep_days: int = Field(default=30, ge=4, le=3650)
    # Endpoints on loopback and private addresses, and over plain http: development and tests.
    webhook_allow_private: bool = False
    # Callback's API as the agent's browser reaches it (the console at /console calls it);
    # unset: RINGBACK_CALLBACK_URL. Callback must allow history's origin (CORS).
    console_callback_url: str | None = Field(
        default=None,
        description="callback's API as the agents' browsers reach it, for the console at "
        "`/console/`; unset: `RINGBACK_CALLBACK_URL`",
    )

    @model_validator(mode="after")
    def _refuse_private_webhooks_in_production(self) -> HistorySettings:
        if self.environment == "production" and self.webhook_allow_private:
            raise ValueError(
                "RINGBACK_WEBHOOK_ALLOW_PRIVATE is for development and tests: in production "
                "webhooks never reach loopback, private or link-local addresses"
            )
        return self

    @model_validator(mode="after")
    def _default_console_callback_url(self) -> HistorySettings:
        url = self.console_callback_url or self.peer_url("callback")
        object.__setattr__(self, "console_callback_url", url.rstrip("/"))
        return self
