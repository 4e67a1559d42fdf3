"""Operator settings (`OPERATOR_*`). To be moved into `tiktok_service.settings` by the lead.

Each field says its unit and why its default was chosen. Built once in the entry point
and passed down: the pure modules (`desired`, `lifecycle`) receive it as an argument.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """The Livestream operator: one connector pod per Livestream, status from heartbeats."""

    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="ignore")

    # Where the cluster is and what to watch.
    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig file; None = in-cluster service account (or the client's default)."
    )
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to serve (JSON list); empty = cluster-wide."
    )
    peering_name: str | None = Field(
        default="tiktok-operator", description="KopfPeering object shared by the replicas; None = standalone."
    )
    peering_priority: int | None = Field(
        default=None,
        description="kopf pauses every replica that sees a peer of equal or higher priority, so replicas need "
        "distinct priorities: None = random at start; the highest live replica is the active one.",
    )
    peering_lifetime_s: int = Field(
        default=60, ge=5, description="A replica not seen for this long is dead (failover time after a crash)."
    )

    # Connections of the operator itself.
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("OPERATOR_REDIS_URL", "REDIS_URL")
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPERATOR_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL with the livestreams table; None = do not mirror rows (dev, benchmarks).",
    )

    # The connector pod.
    connector_image: str = "ghcr.io/tiktok-service/tiktok-service:0.1.0"
    connector_image_pull_policy: str = "IfNotPresent"
    connector_secret_name: str = Field(
        default="tiktok-connector", description="Secret (in each Livestream's namespace) the connector reads."
    )
    connector_redis_url_key: str = "redis-url"
    connector_sign_api_key_key: str = Field(default="sign-api-key", description="Optional key of the Secret.")
    sign_api_url: str | None = None
    tiktok_app_url: str | None = None
    tiktok_webcast_url: str | None = None
    # A connector measured ~75 MB RSS steady state: request a bit more so nodes are not
    # overcommitted and the cluster autoscaler adds nodes as rooms grow; the limit leaves room
    # for bursts (buffering while Redis is down). No CPU limit: throttling a socket reader
    # only makes TikTok drop us.
    connector_cpu_request: str = "50m"
    connector_memory_request: str = "96Mi"
    connector_memory_limit: str = "256Mi"
    connector_drain_timeout_s: int = Field(default=20, ge=1, description="Connector's flush time on SIGTERM.")
    connector_grace_period_s: int = Field(
        default=30, ge=1, description="Pod terminationGracePeriodSeconds; must exceed the drain timeout."
    )
    connector_safe_to_evict: bool = Field(
        default=True, description="cluster-autoscaler may move connectors (a reconnect gap replayed by TikTok)."
    )
    connector_topology_max_skew: int = Field(
        default=5, ge=1, description="Soft spread of connectors across nodes (ScheduleAnyway)."
    )
    connector_run_as_user: int = 10001
    connector_service_account: str | None = None

    # Reconciliation pacing.
    restart_reset_after_s: float = Field(
        default=600.0, gt=0, description="A connector that ran this long starts its failure count afresh."
    )
    resync_interval_s: float = Field(
        default=5.0, gt=0, description="How often each Livestream re-reads its connector's heartbeat (2 s refresh)."
    )
    status_min_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="Viewers/counts/last-event changes alone patch a Livestream's status at most this often, "
        "so 1,000 live rooms cost <= 100 patches/s; phase changes are patched at once.",
    )
    heartbeat_grace_s: float = Field(
        default=30.0, gt=0, description="A running pod without a heartbeat for this long is reported NoHeartbeat."
    )
    worker_limit: int | None = Field(default=None, ge=1, description="kopf's concurrent object workers (None = any).")
    http_port: int = Field(default=8090, ge=0, le=65535, description="/healthz and /metrics (0 = off).")
    log_level: str = "INFO"
