"""Prometheus metrics of a connector process (one room per process, so module-level is fine)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_RECEIVED = Counter("tiktok_connector_events_received_total", "TikTok messages received, by event type", ["type"])
EVENTS_PUBLISHED = Counter(
    "tiktok_connector_events_published_total", "Envelopes written to Redis, by event type", ["type"]
)
EVENTS_DROPPED = Counter(
    "tiktok_connector_events_dropped_total",
    "Messages not published, by reason "
    "(duplicate, filtered, handler_error, buffer_full, malformed_frame, fenced, drain_timeout)",
    ["reason"],
)
MESSAGES_DROPPED = Counter(
    "tiktok_connector_messages_dropped_total",
    "TikTok messages not published, by method and reason (duplicate, filtered, buffer_full, handler_error)",
    ["method", "reason"],
)
SCHEMA_DRIFT = Counter(
    "tiktok_connector_schema_drift_total", "Messages with fields missing or of the wrong shape", ["type"]
)
HANDLER_ERRORS = Counter("tiktok_connector_handler_errors_total", "Exceptions raised while normalising")
RECONNECTS = Counter("tiktok_connector_reconnects_total", "Reconnect attempts, by reason", ["reason"])
PUBLISH_ERRORS = Counter("tiktok_connector_publish_errors_total", "Failed Redis publish round trips")
BUFFER_DEPTH = Gauge("tiktok_connector_buffer_depth", "Envelopes waiting to be published")
LAST_EVENT = Gauge("tiktok_connector_last_event_timestamp_seconds", "Time of the last event received")
VIEWERS = Gauge("tiktok_connector_viewers", "Last viewer count reported by TikTok")
# Fencing and Redis failover (connector/fencing.py, connector/publisher.py).
FENCE_EPOCH = Gauge("tiktok_connector_fence_epoch", "Epoch this connector claimed for its Livestream")
FENCED = Counter("tiktok_connector_fenced_total", "Writes refused because a newer connector claimed the Livestream")
EVENTS_ALREADY_PUBLISHED = Counter(
    "tiktok_connector_events_already_published_total",
    "Events of a resent batch that Redis already had (the first reply was lost); not written twice",
)
EVENTS_REPLAYED = Counter(
    "tiktok_connector_events_replayed_total",
    "Acknowledged events Redis no longer had (failover, restart without persistence), sent again",
)
EVENTS_LOST = Counter(
    "tiktok_connector_events_lost_total",
    "Acknowledged events Redis no longer had and the replay window no longer held, by reason",
    ["reason"],
)
REPLICATION_UNCONFIRMED = Counter(
    "tiktok_connector_replication_unconfirmed_total",
    "Published events that WAIT did not see on REPLICAS_TO_WAIT replicas within the timeout",
)


class _PerType:
    """Label children resolved once per type: `.labels()` costs a lock and a dict build per call."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Counter] = {}

    def inc(self, event_type: str, amount: int = 1) -> None:
        child = self._children.get(event_type)
        if child is None:
            child = self._children[event_type] = self._counter.labels(type=event_type)
        child.inc(amount)


received = _PerType(EVENTS_RECEIVED)
published = _PerType(EVENTS_PUBLISHED)


class _Drops:
    """Counts a dropped message twice: by reason (the overall total) and by method and reason."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], tuple[Counter, Counter]] = {}

    def inc(self, method: str, reason: str) -> None:
        pair = self._children.get((method, reason))
        if pair is None:
            pair = self._children[(method, reason)] = (
                EVENTS_DROPPED.labels(reason=reason),
                MESSAGES_DROPPED.labels(method=method, reason=reason),
            )
        pair[0].inc()
        pair[1].inc()


dropped = _Drops()


# Egress proxies: labels are reasons and list positions, never a proxy's address or credentials.
PROXY_ROTATIONS = Counter(
    "tiktok_connector_proxy_rotations_total", "Moves to the next proxy of the list, by failure reason", ["reason"]
)
PROXY_INDEX = Gauge("tiktok_connector_proxy_index", "Position in the proxy list of the proxy in use (-1 = none)")
