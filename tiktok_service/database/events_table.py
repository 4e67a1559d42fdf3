"""The shape of an `events` row and the keyset cursor over a livestream's events (pure).

The persister builds records in this shape (`persister.rows`), `events_repository` copies
them into the table, and the API pages through them with `Cursor`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Final

#: Column order of a record, as given to COPY.
COLUMNS: Final = (
    "id",
    "livestream_id",
    "event_id",
    "event_type",
    "room_id",
    "user_id",
    "username",
    "payload",
    "timestamp",
)
Record = tuple[uuid.UUID, uuid.UUID, str, str, int, int | None, str | None, str, dt.datetime]
#: Position of the payload (the envelope as published) in a record.
PAYLOAD: Final = 7

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position in "events of a livestream by time": the last row's (timestamp, id)."""

    timestamp: dt.datetime
    id: uuid.UUID

    def encode(self) -> str:
        """An opaque, URL-safe token for API clients."""
        micros = (self.timestamp - _EPOCH) // dt.timedelta(microseconds=1)
        return f"{micros}_{self.id.hex}"

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Inverse of `encode`; raises ValueError on a token we did not make."""
        micros, sep, hex_id = token.partition("_")
        if not sep or not micros.lstrip("-").isdigit():
            raise ValueError(f"invalid cursor {token!r}")
        try:
            moment = _EPOCH + dt.timedelta(microseconds=int(micros))
        except OverflowError as exc:
            raise ValueError(f"invalid cursor {token!r}") from exc
        return cls(timestamp=moment, id=uuid.UUID(hex=hex_id))
