"""Prometheus metrics of one API process, on a registry made per app (nothing at import time).

Labels never carry a workspace, a livestream or a key: /metrics is unauthenticated.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "tiktok_api_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tiktok_api_request_seconds",
            "Time to the response headers (SSE: to the start of the stream).",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.sse_subscribers = Gauge("tiktok_api_sse_subscribers", "Open SSE streams.", registry=registry)
        self.sse_feeds = Gauge(
            "tiktok_api_sse_feeds", "Livestreams being read from Redis for SSE (one reader each).", registry=registry
        )
        self.sse_entries_read = Counter(
            "tiktok_api_sse_entries_read", "Stream entries read by the feed readers.", registry=registry
        )
        self.sse_gaps = Counter(
            "tiktok_api_sse_gaps",
            "Gap events sent: a subscriber resumed from an entry Redis no longer holds (trimmed or expired).",
            registry=registry,
        )
        self.sse_bytes_sent = Counter(
            "tiktok_api_sse_event_bytes", "Event bytes handed to SSE subscribers.", registry=registry
        )
        self.auth_failures = Counter(
            "tiktok_api_auth_failures", "Requests refused for a missing, malformed or unknown key.", registry=registry
        )
        self.refusals = Counter(
            "tiktok_api_refusals",
            "Requests refused with a reason code (rate_limited, livestream_quota, stream_quota, stream_capacity, "
            "*_unavailable, ...).",
            ["reason"],
            registry=registry,
        )
        self.rate_limit_unchecked = Counter(
            "tiktok_api_rate_limit_unchecked",
            "Requests let through without a rate-limit check because Redis did not answer (fail open).",
            registry=registry,
        )
        self.sse_revoked = Counter(
            "tiktok_api_sse_revoked", "SSE streams ended because their API key was revoked.", registry=registry
        )
