"""Process settings: the only module that reads the environment.

One `BaseSettings` class per process. Each field says its unit and why its default was
chosen. A pod is configured through environment variables (`CONNECTOR_*`, `PERSISTER_*`);
the shared connection URLs also accept the unprefixed `REDIS_URL` / `DATABASE_URL`.
Command-line flags override the environment (see `tiktok_service.cli`).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tiktok_service.domain.events import EventType


def _url(prefix: str, name: str, default: str) -> object:
    return Field(default=default, validation_alias=AliasChoices(f"{prefix}{name}", name))


class ConnectorSettings(BaseSettings):
    """One connector process = one TikTok room of one Livestream."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_", extra="ignore")

    livestream_id: str = Field(min_length=1, max_length=128, description="Livestream id (the CR's uid).")
    username: str = Field(min_length=2, max_length=24, pattern=r"^[A-Za-z0-9_.]+$", description="TikTok @unique_id.")
    room_id: int | None = Field(default=None, description="Skip room lookup and join this room.")
    redis_url: str = _url("CONNECTOR_", "REDIS_URL", "redis://127.0.0.1:6379/0")  # type: ignore[assignment]

    # Where TikTok is. None = the TikTokLive library's defaults (real TikTok and its sign server).
    sign_api_url: str | None = None
    sign_api_key: str | None = None
    tiktok_app_url: str | None = None
    tiktok_webcast_url: str | None = None

    wait_for_live: bool = Field(default=False, description="Poll until an offline user goes live.")
    live_poll_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between live checks; TikTok rate-limits faster polling."
    )
    event_types: list[EventType] = Field(default_factory=list, description="Publish only these types (empty = all).")
    gift_progress: bool = Field(default=False, description="Also publish tiktok.gift.progress per streak step.")
    gift_streak_timeout_s: float = Field(
        default=60.0, gt=0, description="A streak with no update for this long is closed as incomplete."
    )

    # Publishing. ~ trimming keeps XADD O(1); 100k entries ≈ 50-100 MB of Redis per busy type.
    type_stream_maxlen: int = Field(default=100_000, ge=100, description="Approx. MAXLEN of per-type streams.")
    livestream_stream_maxlen: int = Field(
        default=10_000, ge=100, description="Approx. MAXLEN of the per-livestream stream (SSE resume window)."
    )
    livestream_stream_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="Per-livestream stream expires this long after the last event."
    )
    buffer_size: int = Field(
        default=50_000, ge=100, description="Events held in memory while Redis is unreachable (~1 KB each)."
    )
    publish_batch: int = Field(
        default=2_000, ge=1, description="Max events per Redis round trip; large batches keep a backlog short."
    )
    dedupe_window: int = Field(
        default=20_000, ge=100, description="Recent msg_ids remembered to drop replayed history."
    )

    # Reconnects: exponential backoff with full jitter between base and cap.
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    max_reconnects: int = Field(default=0, ge=0, description="Give up after this many in a row (0 = never).")

    connect_timeout_s: float = Field(
        default=30.0, gt=0, description="Room lookup + sign + socket open; the sign client has no timeout."
    )
    http_timeout_s: float = Field(default=10.0, gt=0, description="Per HTTP request to TikTok.")
    stall_timeout_s: float = Field(
        default=120.0, gt=0, description="Reconnect when a live socket brings nothing for this long."
    )
    watchdog_interval_s: float = Field(default=1.0, gt=0, description="Stall and streak-timeout check period.")
    max_frame_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Largest WebSocket frame accepted.")
    drain_timeout_s: float = Field(
        default=20.0, gt=0, description="On shutdown, time allowed to flush the buffer (< pod grace period)."
    )

    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="Status hash refresh period.")
    heartbeat_ttl_s: int = Field(default=15, ge=2, description="Status hash expiry: missed heartbeats = gone.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="/healthz and /metrics (0 = off).")
    log_level: str = "INFO"


class PersisterSettings(BaseSettings):
    """A persister: per-type streams (consumer group) -> PostgreSQL `events`."""

    model_config = SettingsConfigDict(env_prefix="PERSISTER_", extra="ignore")

    redis_url: str = _url("PERSISTER_", "REDIS_URL", "redis://127.0.0.1:6379/0")  # type: ignore[assignment]
    database_url: str = _url(  # type: ignore[assignment]
        "PERSISTER_", "DATABASE_URL", "postgresql://tiktok@127.0.0.1:5432/tiktok"
    )
    consumer_name: str | None = Field(default=None, description="Defaults to hostname-pid (the pod name).")
    batch_size: int = Field(default=2_000, ge=1, description="Max entries per read and per COPY.")
    block_ms: int = Field(default=1_000, ge=1, description="XREADGROUP block time.")
    claim_idle_ms: int = Field(
        default=60_000, ge=1_000, description="Reclaim entries pending longer than this (a dead persister)."
    )
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_cap_s: float = Field(default=30.0, gt=0)
    http_port: int = Field(default=8081, ge=0, le=65535)
    log_level: str = "INFO"
