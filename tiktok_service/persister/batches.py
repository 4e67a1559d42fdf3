"""Stream entries -> batches of `events` records on their way to PostgreSQL (pure).

A batch keeps, for every record, where it came from (stream and entry id), because the
entry is acked only once its record is committed. It holds parallel lists rather than an
object per entry: a batch of 2,000 entries is a handful of objects for the garbage
collector to scan, not several thousand, and splitting or acking it is slicing lists.

Entries arrive in two forms. The hot path (`add_found`) takes an XREADGROUP reply as
hiredis parsed it, without redis-py's conversion of every entry into a dict; the rest
(reclaimed and own pending entries, a few at a time) arrive as `streams.Entry`. Both go
through `rows`, so an entry is stored or dead-lettered by the same rules whatever its path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiktok_service.domain import naming
from tiktok_service.persister import rows
from tiktok_service.persister.streams import DeadLetter, Entry


@dataclass(slots=True)
class Batch:
    """Records to store, with the stream and entry id of each (same positions)."""

    streams: list[str] = field(default_factory=list)
    ids: list[bytes] = field(default_factory=list)
    records: list[rows.Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def append(self, stream: str, entry_id: bytes, record: rows.Record) -> None:
        self.streams.append(stream)
        self.ids.append(entry_id)
        self.records.append(record)

    def split(self, at: int) -> tuple[Batch, Batch]:
        """(the first `at` records, the rest)."""
        return (
            Batch(self.streams[:at], self.ids[:at], self.records[:at]),
            Batch(self.streams[at:], self.ids[at:], self.records[at:]),
        )

    def ids_by_stream(self) -> dict[str, list[bytes]]:
        """Entry ids grouped by stream, as XACK takes them."""
        grouped: dict[str, list[bytes]] = {}
        for stream, entry_id in zip(self.streams, self.ids, strict=True):
            grouped.setdefault(stream, []).append(entry_id)
        return grouped

    def entry(self, position: int) -> Entry:
        """The entry a record came from, for a dead letter. Only the envelope is kept in a
        batch (it is the record's payload, byte for byte), and that is what a dead letter
        records of an entry that has one."""
        payload = self.records[position][rows.PAYLOAD]
        return Entry(self.streams[position], self.ids[position], {naming.FIELD_EVENT: payload.encode()})


def reply_streams(reply: Any) -> list[tuple[str, list[Any]]]:
    """The (stream, entries) of an XREADGROUP reply as hiredis parsed it: a map of stream to
    entries (RESP3) or a list of [stream, entries] pairs (RESP2); None when nothing came
    (then there are no streams to decode)."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    return [(stream.decode() if isinstance(stream, bytes) else str(stream), found) for stream, found in pairs]


def add_found(batch: Batch, stream: str, found: Iterable[Any]) -> list[DeadLetter]:
    """Decode one stream's entries of a reply into `batch`; returns the poison entries'
    dead letters. An entry is [id, [field, value, ...]], or [id, None] if it was trimmed."""
    letters: list[DeadLetter] = []
    streams, ids, records = batch.streams, batch.ids, batch.records  # the hot loop appends directly
    for entry_id, fields in found:
        try:
            if fields and len(fields) == 6 and fields[4] == naming.FIELD_EVENT:  # type, id, event: as published
                record = rows.fast_record(fields[5])
            else:
                raw = _event_field(fields)
                record = rows.fast_record(raw) if raw is not None else None
        except Exception:  # anything odd goes the full way, which explains refusals
            record = None
        if record is not None:
            streams.append(stream)
            ids.append(entry_id)
            records.append(record)
        else:  # unusual or poison: the full rules decide
            _add_entry(batch, Entry(stream, entry_id, _as_dict(fields)), letters)
    return letters


def add_entries(batch: Batch, entries: Iterable[Entry]) -> list[DeadLetter]:
    """Decode entries into `batch`; returns the poison entries' dead letters."""
    letters: list[DeadLetter] = []
    for entry in entries:
        _add_entry(batch, entry, letters)
    return letters


def _add_entry(batch: Batch, entry: Entry, letters: list[DeadLetter]) -> None:
    try:
        record = rows.record_from_fields(entry.fields)
    except rows.PoisonEntry as exc:
        letters.append(DeadLetter(entry, exc.category, exc.reason))
        return
    except Exception as exc:  # a decoder bug must not stop the group: the entry is kept with it
        letters.append(DeadLetter(entry, "undecodable", f"decoding failed: {exc!r}"[:500]))
        return
    batch.append(entry.stream, entry.id, record)


def _as_dict(fields: Sequence[bytes] | None) -> dict[bytes, bytes]:
    """The fields of an entry as `Entry` holds them (flat list -> dict)."""
    return dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {}


def _event_field(fields: Sequence[bytes] | None) -> bytes | None:
    """The `event` value of a flat [field, value, ...] list (fields at even positions)."""
    if not fields:
        return None
    for position in range(0, len(fields) - 1, 2):
        if fields[position] == naming.FIELD_EVENT:
            return fields[position + 1]
    return None
