"""What a connector reports about itself, and how that is laid out in its Redis hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ConnectorPhase(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    WAITING = "waiting"  # the user is offline; polling until they go live
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(slots=True)
class ConnectorStatus:
    phase: ConnectorPhase = ConnectorPhase.CONNECTING
    room_id: int | None = None
    viewer_count: int | None = None
    connected_at_ms: int | None = None
    disconnected_at_ms: int | None = None
    last_event_at_ms: int | None = None
    reconnects: int = 0
    last_error: str = ""
    reason: str = ""
    next_retry_at_ms: int | None = None
    exit_code: int | None = None
    received: dict[str, int] = field(default_factory=dict)

    def to_hash(self, *, now_ms: int) -> dict[str, str]:
        """Flat string fields for HSET (absent values are written as empty strings)."""

        def opt(value: int | None) -> str:
            return "" if value is None else str(value)

        return {
            "phase": self.phase.value,
            "room_id": opt(self.room_id),
            "viewer_count": opt(self.viewer_count),
            "connected_at_ms": opt(self.connected_at_ms),
            "disconnected_at_ms": opt(self.disconnected_at_ms),
            "last_event_at_ms": opt(self.last_event_at_ms),
            "reconnects": str(self.reconnects),
            "last_error": self.last_error[:500],
            "reason": self.reason,
            "next_retry_at_ms": opt(self.next_retry_at_ms),
            "exit_code": opt(self.exit_code),
            "updated_at_ms": str(now_ms),
        }


def status_from_hash(raw: dict[str, str]) -> ConnectorStatus:
    """Inverse of `ConnectorStatus.to_hash` (the operator reads this)."""

    def opt(name: str) -> int | None:
        value = raw.get(name, "")
        return int(value) if value else None

    return ConnectorStatus(
        phase=ConnectorPhase(raw.get("phase", ConnectorPhase.CONNECTING.value)),
        room_id=opt("room_id"),
        viewer_count=opt("viewer_count"),
        connected_at_ms=opt("connected_at_ms"),
        disconnected_at_ms=opt("disconnected_at_ms"),
        last_event_at_ms=opt("last_event_at_ms"),
        reconnects=int(raw.get("reconnects") or 0),
        last_error=raw.get("last_error", ""),
        reason=raw.get("reason", ""),
        next_retry_at_ms=opt("next_retry_at_ms"),
        exit_code=opt("exit_code"),
    )
