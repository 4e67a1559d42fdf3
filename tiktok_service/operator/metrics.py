"""Prometheus metrics of one operator instance, registered in the registry it is given.

An object rather than module globals: tests and the peering check run two operators in
one process, each with its own registry and its own view of the livestreams it serves.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tiktok_service.operator.model import Phase


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconciliations = Counter(
            "tiktok_operator_reconciliations_total",
            "Reconcile passes, by result (ok, error)",
            ["result"],
            registry=registry,
        )
        self.duration = Histogram(
            "tiktok_operator_reconcile_duration_seconds",
            "Time of one reconcile pass",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pod_actions = Counter(
            "tiktok_operator_pod_actions_total",
            "Pods created and deleted, and creates the API server refused (action=refused), by action",
            ["action"],
            registry=registry,
        )
        self.status_patches = Counter(
            "tiktok_operator_status_patches_total", "Livestream status patches sent", registry=registry
        )
        self.row_errors = Counter(
            "tiktok_operator_row_write_errors_total", "Failed writes of livestreams rows (retried)", registry=registry
        )
        self.livestreams = Gauge(
            "tiktok_operator_livestreams",
            "Livestreams served by this operator, by phase",
            ["phase"],
            registry=registry,
        )
        self.credentials_refused = Gauge(
            "tiktok_operator_credentials_refused",
            "1 while the API server refuses the operator's credentials (HTTP 401), else 0",
            registry=registry,
        )
        self.logins_refused = Counter(
            "tiktok_operator_logins_refused",
            "Logins the API server refused (HTTP 401); retried with backoff",
            registry=registry,
        )
        self._phases: dict[tuple[str, str], str] = {}
        for phase in Phase:
            self.livestreams.labels(phase=phase.value).set(0)

    def observe_phase(self, key: tuple[str, str], phase: str | None) -> None:
        """Track `key`'s phase (None = no longer served) for the by-phase gauge."""
        if self._phases.get(key) == phase:
            return
        old = self._phases.pop(key, None)
        if old is not None:
            self.livestreams.labels(phase=old).dec()
        if phase is not None:
            self._phases[key] = phase
            self.livestreams.labels(phase=phase).inc()

    @property
    def served(self) -> int:
        return len(self._phases)
