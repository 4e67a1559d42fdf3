"""Process settings: the only module that reads the environment.

One `BaseSettings` class per process. Each field says its unit and why its default was
chosen. A pod is configured through environment variables (`CONNECTOR_*`, `PERSISTER_*`);
the shared connection URLs also accept the unprefixed `REDIS_URL` / `DATABASE_URL`.
Command-line flags override the environment (see `tiktok_service.cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tiktok_service.domain import proxies as proxy_list
from tiktok_service.domain.events import EventType

#: A Secret's name (DNS-1123 subdomain) and a key of its data, as Kubernetes accepts them.
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
#: Locale of TikTok's web client parameters (ISO 639 language, ISO 3166 region, IANA time zone).
LANGUAGE_PATTERN = r"^[a-z]{2,3}$"
REGION_PATTERN = r"^[A-Z]{2}$"
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
#: TikTokLive's default sign server (`WebDefaults.tiktok_sign_url`; a unit test keeps them equal).
DEFAULT_SIGN_URL = "https://api.eulerstream.com"


def _url(prefix: str, name: str, default: str, description: str) -> object:
    return Field(default=default, validation_alias=AliasChoices(f"{prefix}{name}", name), description=description)


REDIS_URL_HELP = "Redis (redis:// or rediss:// with TLS; user and password for an ACL user)."
DATABASE_URL_HELP = "PostgreSQL (postgresql://user:password@host:port/database)."
LOG_LEVEL_HELP = "Log level (DEBUG, INFO, WARNING, ERROR); logs are JSON lines on stderr."


class ConnectorSettings(BaseSettings):
    """One connector process = one TikTok room of one Livestream."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_", extra="ignore")

    livestream_id: str = Field(min_length=1, max_length=128, description="Livestream id (the CR's uid).")
    username: str = Field(min_length=2, max_length=24, pattern=r"^[A-Za-z0-9_.]+$", description="TikTok @unique_id.")
    room_id: int | None = Field(default=None, description="Skip room lookup and join this room.")
    redis_url: str = _url("CONNECTOR_", "REDIS_URL", "redis://127.0.0.1:6379/0", REDIS_URL_HELP)  # type: ignore[assignment]

    # Where TikTok is. None = the TikTokLive library's defaults (real TikTok and its sign server).
    sign_api_url: str | None = Field(default=None, description="Sign server URL (unset = TikTokLive's default).")
    sign_api_key: str | None = Field(
        default=None, description="API key of the sign server (from the connector Secret)."
    )
    tiktok_app_url: str | None = Field(default=None, description="TikTok's web URL (unset = https://www.tiktok.com).")
    tiktok_webcast_url: str | None = Field(
        default=None, description="TikTok's webcast API URL (unset = TikTokLive's default)."
    )

    # Connection options (README, "Connection options"). Credentials are SecretStr: never printed.
    proxies: SecretStr | None = Field(
        default=None,
        description="Egress proxies, one URL per line (http://user:pass@host:port or socks5://...), used for the "
        "web requests and the WebSocket; the next one is used when a connection is blocked, rate-limited or "
        "fails to open.",
    )
    session_id: SecretStr | None = Field(
        default=None, description="`sessionid` cookie of a TikTok account (logged-in session; sent to the sign server)."
    )
    tt_target_idc: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="`tt-target-idc` cookie of that account (its data centre, e.g. useast2a); required with a session.",
    )
    session_sign_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CONNECTOR_SESSION_SIGN_HOST", "WHITELIST_AUTHENTICATED_SESSION_ID_HOST"),
        description="TikTokLive's consent switch: the sign server host (e.g. api.eulerstream.com) allowed to receive "
        "the session; the library refuses to send a session anywhere else.",
    )
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN, description="Web client language (not random).")
    region: str = Field(default="US", pattern=REGION_PATTERN, description="Web client region/country (not random).")
    timezone: str = Field(
        default="America/New_York", pattern=TIMEZONE_PATTERN, description="Web client time zone (IANA name)."
    )

    wait_for_live: bool = Field(default=False, description="Poll until an offline user goes live.")
    live_poll_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between live checks; TikTok rate-limits faster polling."
    )
    event_types: list[EventType] = Field(default_factory=list, description="Publish only these types (empty = all).")
    gift_progress: bool = Field(default=False, description="Also publish tiktok.gift.progress per streak step.")
    gift_streak_timeout_s: float = Field(
        default=60.0, gt=0, description="A streak with no update for this long is closed as incomplete."
    )

    # Publishing. The shared per-type streams are trimmed by the persister only (PersisterSettings);
    # the per-livestream stream's ~ trimming keeps XADD O(1).
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
        default=5_000, ge=100, description="Recent msg_ids remembered to drop replayed history (TikTok replays tens)."
    )
    # Fencing and Redis failover (README, "Redis failover").
    pod_uid: str | None = Field(
        default=None, max_length=64, description="The pod's uid (downward API): names who holds the Livestream."
    )
    replay_window: int = Field(
        default=2_000,
        ge=0,
        description="Newest published events kept in memory and sent again if Redis loses them (failover).",
    )
    replicas_to_wait: int = Field(
        default=0, ge=0, description="WAIT for this many replicas after each batch; unconfirmed batches are counted."
    )
    replica_wait_timeout_ms: int = Field(
        default=100, ge=1, le=4_000, description="How long one WAIT may take (below the Redis socket timeout)."
    )

    # Reconnects: exponential backoff with full jitter between base and cap.
    backoff_base_s: float = Field(default=1.0, gt=0, description="First reconnect delay; doubles per failure.")
    backoff_cap_s: float = Field(default=60.0, gt=0, description="Largest reconnect delay.")
    max_reconnects: int = Field(default=0, ge=0, description="Give up after this many in a row (0 = never).")
    healthy_after_s: float = Field(
        default=30.0,
        gt=0,
        description="A connection that lived this long resets the failure count (shorter = failure).",
    )
    not_found_attempts: int = Field(
        default=4, ge=1, description="'User not found' answers in a row before exit 11 (captcha pages look alike)."
    )
    captcha_attempts: int = Field(default=4, ge=1, description="Captcha/verification pages in a row before exit 14.")
    blocked_attempts: int = Field(default=2, ge=1, description="Rejected WebSocket handshakes in a row before exit 13.")
    quota_wait_max_s: float = Field(
        default=300.0, ge=0, description="Wait in-process for a sign quota reset up to this long; longer = exit 16."
    )

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
    log_level: str = Field(default="INFO", description=LOG_LEVEL_HELP)
    redis_ca_file: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs that sign Redis' certificate (a `rediss://` REDIS_URL); None = the "
        "system's CAs. Set by the operator when it mounts a CA (OPERATOR_CONNECTOR_REDIS_CA_*).",
    )

    @property
    def proxy_endpoints(self) -> tuple[proxy_list.ProxyEndpoint, ...]:
        """The parsed proxy list (validated when the settings were read)."""
        return proxy_list.parse_proxies(self.proxies.get_secret_value()) if self.proxies else ()

    @model_validator(mode="after")
    def _connection_options_are_usable(self) -> Self:
        # Messages name the problem, never a value: they end up in logs and pod events.
        self.proxy_endpoints  # noqa: B018 - raises ProxyListError (a ValueError) on a bad list
        if self.redis_ca_file is not None and not self.redis_url.startswith("rediss://"):
            raise ValueError("redis_ca_file is set but redis_url is not rediss://: the CA would verify nothing")
        if self.room_id is not None and self.room_id <= 0:
            raise ValueError("room_id must be a positive room id")
        if self.session_id is not None and self.session_id.get_secret_value():
            if not self.tt_target_idc:
                raise ValueError("a session (session_id) needs its tt_target_idc")
            if not self.session_sign_host:
                raise ValueError(
                    "a session is sent to the sign server: set WHITELIST_AUTHENTICATED_SESSION_ID_HOST to that "
                    "server's host to accept this (see the README, Connection options)"
                )
            sign_host = (self.sign_api_url or DEFAULT_SIGN_URL).rstrip("/").split("://", 1)[-1]
            if self.session_sign_host != sign_host:
                raise ValueError("WHITELIST_AUTHENTICATED_SESSION_ID_HOST is not the host of the sign server in use")
        return self


class PersisterSettings(BaseSettings):
    """A persister: per-type streams (consumer group) -> PostgreSQL `events`."""

    model_config = SettingsConfigDict(env_prefix="PERSISTER_", extra="ignore")

    redis_url: str = _url("PERSISTER_", "REDIS_URL", "redis://127.0.0.1:6379/0", REDIS_URL_HELP)  # type: ignore[assignment]
    database_url: str = _url(  # type: ignore[assignment]
        "PERSISTER_", "DATABASE_URL", "postgresql://tiktok@127.0.0.1:5432/tiktok", DATABASE_URL_HELP
    )
    consumer_name: str | None = Field(default=None, description="Defaults to hostname-pid (the pod name).")
    batch_size: int = Field(default=2_000, ge=1, description="Max rows per COPY batch (filled from several reads).")
    block_ms: int = Field(default=1_000, ge=1, description="XREADGROUP block time.")
    claim_idle_ms: int = Field(
        default=60_000, ge=1_000, description="Reclaim entries pending longer than this (a dead persister)."
    )
    retry_base_s: float = Field(default=0.5, gt=0, description="First retry delay on a PostgreSQL/Redis outage.")
    retry_cap_s: float = Field(default=30.0, gt=0, description="Largest retry delay.")
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="An entry delivered this many times without being acknowledged (a persister crashed or "
        "hung on it each time) is stored alone, and dead-lettered with the reason if that fails too.",
    )
    # Retention of the shared per-type streams: connectors never trim them, persisters do.
    stream_retention_s: float = Field(
        default=600.0,
        ge=0,
        description="Acknowledged entries of the shared per-type streams stay in Redis this long (for inspection "
        "and replays); entries some consumer group has not acknowledged are never trimmed.",
    )
    trim_interval_s: float = Field(
        default=5.0, gt=0, description="How often the shared streams are trimmed and consumer-group lag is measured."
    )
    http_port: int = Field(default=8081, ge=0, le=65535, description="/healthz and /metrics (0 = off).")
    log_level: str = Field(default="INFO", description=LOG_LEVEL_HELP)


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
    stop_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="After SIGTERM, how long kopf may take to stop (peering clean-up against an API server that "
        "does not answer retries forever); then the operator exits 1. Keep below the pod's grace period (30 s).",
    )

    # Connections of the operator itself.
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("OPERATOR_REDIS_URL", "REDIS_URL"),
        description=REDIS_URL_HELP + " The operator reads connector heartbeats.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPERATOR_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL with the livestreams table; None = do not mirror rows (dev, benchmarks).",
    )

    # The connector pod.
    connector_image: str = Field(
        default="ghcr.io/tiktok-service/tiktok-service:0.1.0", description="Image of the connector pods."
    )
    connector_image_pull_policy: str = Field(default="IfNotPresent", description="imagePullPolicy of connector pods.")
    connector_secret_name: str = Field(
        default="tiktok-connector", description="Secret (in each Livestream's namespace) the connector reads."
    )
    connector_redis_url_key: str = Field(default="redis-url", description="Key of the Secret holding REDIS_URL.")
    connector_sign_api_key_key: str = Field(default="sign-api-key", description="Optional key of the Secret.")
    sign_api_url: str | None = Field(default=None, description="Passed to connectors (unset = TikTokLive's default).")
    tiktok_app_url: str | None = Field(default=None, description="Passed to connectors (unset = real TikTok).")
    tiktok_webcast_url: str | None = Field(default=None, description="Passed to connectors (unset = real TikTok).")
    # Connection defaults for Livestreams that set none (spec.connection). Secrets are passed to
    # pods by reference (secretKeyRef, resolved by the kubelet): the operator never reads them.
    default_proxy_secret_name: str | None = Field(
        default=None,
        pattern=SECRET_NAME_PATTERN,
        description="Secret (in each Livestream's namespace) holding the default proxy list; None = no proxy.",
    )
    default_proxy_secret_key: str = Field(
        default="proxies", pattern=SECRET_KEY_PATTERN, description="Key of that Secret: one proxy URL per line."
    )
    default_session_secret_name: str | None = Field(
        default=None,
        pattern=SECRET_NAME_PATTERN,
        description="Secret with keys `sessionid` and `tt-target-idc` (a TikTok account); None = anonymous.",
    )
    session_sign_host: str | None = Field(
        default=None,
        description="Sign server host trusted with logged-in sessions (WHITELIST_AUTHENTICATED_SESSION_ID_HOST of "
        "connectors that use one); None = a Livestream with a session fails as misconfigured.",
    )
    connector_language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN, description="Default language.")
    connector_region: str | None = Field(default=None, pattern=REGION_PATTERN, description="Default region.")
    connector_timezone: str | None = Field(default=None, pattern=TIMEZONE_PATTERN, description="Default time zone.")
    # A connector measured 100-107 MB RSS on a realistic room (every message kind, rich users;
    # `make bench`): request a bit more so nodes are not
    # overcommitted and the cluster autoscaler adds nodes as rooms grow; the limit leaves room
    # for bursts (buffering while Redis is down). No CPU limit: throttling a socket reader
    # only makes TikTok drop us.
    connector_cpu_request: str = Field(default="50m", description="Default CPU request of a connector pod.")
    connector_memory_request: str = Field(
        default="112Mi", description="Default memory request (measured RSS 100-107 MB on a realistic room)."
    )
    connector_memory_limit: str = Field(default="256Mi", description="Default memory limit of a connector pod.")
    # Limits on what a Livestream's `spec.connector` may ask for (checked before its pod is
    # created; a Livestream beyond them is Failed, with the reason, until its spec changes).
    connector_max_resources: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "1Gi"},
        description="Largest request or limit per resource name a connector pod may have (JSON map); a resource "
        "not named here may not be asked for at all.",
    )
    connector_allowed_priority_classes: list[str] = Field(
        default_factory=list,
        description="PriorityClasses a Livestream may give its connector (JSON list); empty = none (the cluster's "
        "default priority only).",
    )
    connector_allowed_toleration_keys: list[str] = Field(
        default_factory=list,
        description="Taint keys a Livestream's connector may tolerate (JSON list); a toleration without a key "
        "(tolerates every taint) is never allowed, so control-plane taints are tolerated only when named here.",
    )
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
    connector_run_as_user: int = Field(default=10001, description="uid of the connector container (the image's user).")
    connector_service_account: str | None = Field(
        default=None, description="Service account of connector pods (unset = the namespace's default)."
    )
    # TLS to Redis: the CA bundle that verifies Redis' certificate, mounted read-only into every
    # connector pod (CA certificates are public: a ConfigMap is the usual home; a Secret works too).
    connector_redis_ca_configmap: str | None = Field(
        default=None,
        pattern=SECRET_NAME_PATTERN,
        description="ConfigMap (in each Livestream's namespace) holding the Redis CA bundle; None = none.",
    )
    connector_redis_ca_secret: str | None = Field(
        default=None,
        pattern=SECRET_NAME_PATTERN,
        description="Secret holding the Redis CA bundle, instead of a ConfigMap.",
    )
    connector_redis_ca_key: str = Field(
        default="ca.crt", pattern=SECRET_KEY_PATTERN, description="Key of the CA bundle in that ConfigMap/Secret."
    )
    connector_http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="The connector's /healthz and /metrics port (its liveness probe). 0 = no HTTP port and no "
        "probe: for nodes whose pods share the host network (the local node agent), where a second connector "
        "could not bind a fixed port.",
    )

    # Reconciliation pacing.
    restart_reset_after_s: float = Field(
        default=600.0, gt=0, description="A connector that ran this long starts its failure count afresh."
    )
    resync_interval_s: float = Field(
        default=5.0, gt=0, description="How often each Livestream re-reads its connector's heartbeat (2 s refresh)."
    )
    idle_resync_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="A Livestream whose connector is not running has no heartbeat to read: it changes through pod "
        "and spec events, and is looked at this often only as a safety net (1,000 pending pods cost ~17 passes/s, "
        "not 200).",
    )
    status_min_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="Viewers/counts/last-event changes alone patch a Livestream's status at most this often, "
        "so 1,000 live rooms cost <= 100 patches/s; phase changes are patched at once.",
    )
    status_write_concurrency: int = Field(
        default=4,
        ge=1,
        description="Status patches in flight at once, across all Livestreams. Pod creates and deletes are not "
        "limited: in a burst (1,000 Livestreams applied at once) pods come first and statuses follow.",
    )
    heartbeat_grace_s: float = Field(
        default=30.0, gt=0, description="A running pod without a heartbeat for this long is reported NoHeartbeat."
    )
    worker_limit: int | None = Field(default=None, ge=1, description="kopf's concurrent object workers (None = any).")
    http_port: int = Field(default=8090, ge=0, le=65535, description="/healthz and /metrics (0 = off).")
    log_level: str = Field(default="INFO", description=LOG_LEVEL_HELP)

    @model_validator(mode="after")
    def _grace_covers_drain(self) -> Self:
        if self.connector_grace_period_s <= self.connector_drain_timeout_s:
            raise ValueError("connector_grace_period_s must exceed connector_drain_timeout_s (the connector's flush)")
        if self.connector_redis_ca_configmap and self.connector_redis_ca_secret:
            raise ValueError("name the Redis CA bundle once: connector_redis_ca_configmap or connector_redis_ca_secret")
        return self


class ApiSettings(BaseSettings):
    """The HTTP API: Livestreams for one workspace per API key, SSE from Redis, history from PostgreSQL."""

    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    host: str = Field(default="0.0.0.0", description="Listen address (all interfaces: it runs in a pod).")
    port: int = Field(default=8002, ge=0, le=65535, description="Listen port (0 = any free port).")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("API_REDIS_URL", "REDIS_URL"),
        description=REDIS_URL_HELP,
    )
    database_url: str = Field(
        default="postgresql://tiktok@127.0.0.1:5432/tiktok",
        validation_alias=AliasChoices("API_DATABASE_URL", "DATABASE_URL"),
        description=DATABASE_URL_HELP,
    )
    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig file; None = in-cluster service account (or the client's default)."
    )
    namespace: str = Field(
        default="tiktok-service",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The one namespace whose Livestreams this API manages (its Role is bound there).",
    )

    # Connection pools.
    database_pool_size: int = Field(
        default=10, ge=1, le=200, description="PostgreSQL connections: key lookups and history pages are short."
    )
    redis_pool_size: int = Field(
        default=64,
        ge=2,
        le=10_000,
        description="Redis connections: one blocking XREAD per livestream being streamed, plus catch-up reads.",
    )
    redis_control_pool_size: int = Field(
        default=16,
        ge=1,
        le=1_000,
        description="Redis connections for short commands (rate limits, stream leases, id lookups), apart from "
        "the SSE pool, so streams never starve them; readiness has a connection of its own besides.",
    )
    kube_timeout_s: float = Field(default=10.0, gt=0, description="Per Kubernetes API request.")

    # Server-sent events. One reader per livestream fans out to every subscriber of it.
    sse_block_ms: int = Field(
        default=1_000,
        ge=10,
        le=30_000,
        description="XREAD BLOCK of a livestream's reader: also how often it notices shutdown and its last subscriber.",
    )
    sse_batch: int = Field(
        default=256, ge=1, le=10_000, description="XREAD/XRANGE COUNT per loop: the most entries a subscriber holds."
    )
    sse_ring_size: int = Field(
        default=2_048,
        ge=16,
        le=1_000_000,
        description="Recent entries kept per streamed livestream (~1 KB each); a subscriber further behind reads "
        "Redis itself until it catches up, so a slow client never grows a buffer.",
    )
    sse_writes_per_s: int = Field(
        default=20_000,
        ge=100,
        description="Write budget per livestream: its subscribers are woken at most this many times a second "
        "in total, so 1,000 subscribers of a busy room get a few events per write every 50 ms, while a "
        "few subscribers get each event as it comes (~30 us of CPU per write).",
    )
    sse_ping_interval_s: float = Field(
        default=15.0, gt=0, description="Comment line sent after this long without an event (proxies close idle ones)."
    )
    sse_phase_check_s: float = Field(
        default=2.0, gt=0, description="How often a livestream's reader re-reads its CR phase (Stopped/Ended ends SSE)."
    )
    sse_retry_ms: int = Field(default=2_000, ge=0, description="`retry:` sent to EventSource clients.")
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, description="Uvicorn's graceful-shutdown limit; streams close well before it."
    )

    sse_max_livestreams: int | None = Field(
        default=None,
        ge=1,
        description="Livestreams streamed at once by this process (each holds one SSE pool connection for its "
        "blocking read); below `redis_pool_size`, the rest serving catch-up reads (None: seven eighths of the "
        "pool). A stream of one more livestream is refused (503 `stream_capacity`) instead of exhausting the pool.",
    )

    # The tenant boundary: quotas and rate limits (counted in Redis, shared by every API replica).
    max_livestreams_per_workspace: int = Field(
        default=50,
        ge=0,
        description="Active Livestreams (wanted Running, not Stopped/Ended/Failed) a workspace may have; each is "
        "a connector pod. One more connect or resume is refused with 403 `livestream_quota`.",
    )
    max_streams_per_workspace: int = Field(
        default=200, ge=0, description="Open SSE streams of one workspace (all its keys, all replicas); 429 beyond."
    )
    max_streams_per_key: int = Field(
        default=50, ge=0, description="Open SSE streams of one API key (all replicas); 429 `stream_quota` beyond."
    )
    rate_limit: str = Field(
        default="30/second;1200/minute",
        pattern=r"^[1-9][0-9]*/(second|minute|hour|day)(;[1-9][0-9]*/(second|minute|hour|day))*$",
        description="Requests per API key (`N/second|minute|hour|day`, `;`-separated); 429 with Retry-After beyond. "
        "Counted before the key is looked up, so one key's flood never reaches PostgreSQL.",
    )
    stream_lease_s: float = Field(
        default=30.0,
        ge=3,
        description="An open stream's place in the stream quotas is renewed every third of this; a crashed "
        "replica's streams stop counting after it.",
    )
    key_recheck_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often the keys of open SSE streams are checked again: a revoked key's streams end "
        "(with `event: end`, reason `revoked`) within this.",
    )
    docs: bool = Field(
        default=False, description="Serve /docs, /redoc and /openapi.json (off in production, on in `make dev`)."
    )

    # Pagination.
    page_size: int = Field(
        default=50,
        ge=1,
        le=500,
        description="Page size of lists and history when the client gives no `limit` (<= 500).",
    )

    log_level: str = Field(default="INFO", description=LOG_LEVEL_HELP)

    @model_validator(mode="after")
    def _readers_leave_room_for_catch_up(self) -> Self:
        if self.sse_max_livestreams is not None and self.sse_max_livestreams >= self.redis_pool_size:
            raise ValueError("sse_max_livestreams must be below redis_pool_size (catch-up reads need connections)")
        return self

    @property
    def sse_reader_cap(self) -> int:
        """Livestreams streamed at once: the setting, or the pool less an eighth (at least one) for catch-ups."""
        if self.sse_max_livestreams is not None:
            return self.sse_max_livestreams
        return self.redis_pool_size - max(1, self.redis_pool_size // 8)


class AccessSettings(BaseSettings):
    """`tiktok-service access`: create each component's Redis user and database login.

    Run with an administrator's credentials (Redis: a user allowed `ACL SETUSER`; PostgreSQL:
    the schema's owner with CREATEROLE) and each component's URL, from the very Secret key the
    component reads: the password is taken from that URL, so each password lives in one place.
    A component whose URL is not given is skipped (and the command says so).
    """

    model_config = SettingsConfigDict(env_prefix="ACCESS_", extra="ignore")

    redis_url: SecretStr | None = Field(default=None, description="Redis as an administrator; None = skip Redis.")
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL as the schema's owner; None = skip the database (and the migrations)."
    )
    connector_redis_url: SecretStr | None = Field(
        default=None, description="The connectors' Redis URL (user tiktok-connector); its password is set."
    )
    persister_redis_url: SecretStr | None = Field(
        default=None, description="The persister's Redis URL (user tiktok-persister); its password is set."
    )
    api_redis_url: SecretStr | None = Field(
        default=None, description="The API's Redis URL (user tiktok-api); its password is set."
    )
    operator_redis_url: SecretStr | None = Field(
        default=None, description="The operator's Redis URL (user tiktok-operator); its password is set."
    )
    persister_database_url: SecretStr | None = Field(
        default=None, description="The persister's DSN (login tiktok_persister_login); its password is set."
    )
    operator_database_url: SecretStr | None = Field(
        default=None, description="The operator's DSN (login tiktok_operator_login); its password is set."
    )
    api_database_url: SecretStr | None = Field(
        default=None, description="The API's DSN (login tiktok_api_login); its password is set."
    )
    log_level: str = Field(default="INFO", description=LOG_LEVEL_HELP)
