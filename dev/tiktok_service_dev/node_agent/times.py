"""Kubernetes timestamp formats: `metav1.Time` (seconds) and `metav1.MicroTime` (Leases)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """`metav1.Time`: second precision, so equal seconds compare equal in status diffs."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: datetime) -> str:
    """`metav1.MicroTime`, which `Lease.spec.renewTime` requires (plain RFC 3339 is rejected)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """Inverse of `rfc3339`/`micro_time`; None for absent or malformed values."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
