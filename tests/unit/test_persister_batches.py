"""Stream replies -> batches: every entry becomes a record or a dead letter, and is acked by its id."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tiktok_service.domain import events, naming
from tiktok_service.persister import batches, rows
from tiktok_service.persister.streams import DeadLetter, Entry
from tiktok_service_dev import sample_events

CR_UID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"
COMMENTS = naming.type_stream(events.EventType.COMMENT)
LIKES = naming.type_stream(events.EventType.LIKE)


def flat(fields: dict[bytes, bytes]) -> list[bytes]:
    """Entry fields as hiredis returns them: [field, value, ...]."""
    return [item for pair in fields.items() for item in pair]


def published(n: int) -> list[bytes]:
    return flat(sample_events.entry_fields(sample_events.sample_envelope(n, livestream_id=CR_UID)))


def decode(reply: Any) -> tuple[batches.Batch, list[DeadLetter]]:
    batch = batches.Batch()
    letters: list[DeadLetter] = []
    for stream, found in batches.reply_streams(reply):
        letters += batches.add_found(batch, stream, found)
    return batch, letters


@pytest.mark.parametrize("shape", ["resp3", "resp2"])
def test_a_reply_becomes_one_record_per_entry_with_its_stream_and_id(shape: str) -> None:
    per_stream = {
        COMMENTS.encode(): [[b"1-0", published(0)], [b"1-1", published(4)]],
        LIKES.encode(): [[b"2-0", published(1)]],
    }
    reply: Any = per_stream if shape == "resp3" else [[stream, found] for stream, found in per_stream.items()]
    batch, letters = decode(reply)
    assert letters == []
    assert batch.streams == [COMMENTS, COMMENTS, LIKES]
    assert batch.ids == [b"1-0", b"1-1", b"2-0"]
    expected = [
        rows.record_from_fields(sample_events.entry_fields(sample_events.sample_envelope(n, livestream_id=CR_UID)))
        for n in (0, 4, 1)
    ]
    assert batch.records == expected


@pytest.mark.parametrize("reply", [None, {}, []])
def test_an_empty_reply_has_no_streams(reply: Any) -> None:
    assert batches.reply_streams(reply) == []


def test_fields_in_another_order_are_found() -> None:
    fields = sample_events.entry_fields(sample_events.sample_envelope(2, livestream_id=CR_UID))
    reordered = [naming.FIELD_EVENT, fields[naming.FIELD_EVENT], naming.FIELD_ID, fields[naming.FIELD_ID]]
    batch, letters = decode({COMMENTS: [[b"1-0", reordered]]})
    assert letters == []
    assert batch.records == [rows.record_from_fields(fields)]


def test_poison_entries_become_dead_letters_with_their_fields_and_the_rest_is_kept() -> None:
    poison = [naming.FIELD_TYPE, b"tiktok.comment", naming.FIELD_ID, b"x", naming.FIELD_EVENT, b"{not json"]
    batch, letters = decode({COMMENTS: [[b"1-0", poison], [b"1-1", published(0)], [b"1-2", None], [b"1-3", []]]})
    assert batch.ids == [b"1-1"]
    assert [(letter.entry.id, letter.category) for letter in letters] == [
        (b"1-0", "malformed_envelope"),
        (b"1-2", "entry_deleted"),
        (b"1-3", "entry_deleted"),
    ]
    assert letters[0].entry == Entry(COMMENTS, b"1-0", dict(zip(poison[::2], poison[1::2], strict=True)))


def test_an_entry_the_fast_path_does_not_vouch_for_is_still_stored_when_valid() -> None:
    envelope = sample_events.sample_envelope(5, livestream_id=CR_UID)
    doc = envelope.to_cloudevent()
    doc["time"] = "2026-01-01T00:00:00.005+00:00"  # valid, not format_time's shape
    batch, letters = decode({COMMENTS: [[b"1-0", [naming.FIELD_EVENT, orjson.dumps(doc)]]]})
    assert letters == []
    timestamp = rows.COLUMNS.index("timestamp")
    assert batch.records[0][timestamp] == rows.record_from_envelope(envelope, envelope.encode())[timestamp]


def test_entries_decode_the_same_way_as_a_reply() -> None:
    entries = [
        Entry(COMMENTS, b"1-0", sample_events.entry_fields(sample_events.sample_envelope(0, livestream_id=CR_UID)))
    ]
    batch = batches.Batch()
    assert batches.add_entries(batch, [*entries, Entry(COMMENTS, b"1-1", {})])[0].category == "entry_deleted"
    assert batch == decode({COMMENTS: [[b"1-0", published(0)]]})[0]


def test_a_batch_splits_keeping_records_with_their_ids_and_groups_ids_by_stream() -> None:
    batch, _ = decode({COMMENTS: [[b"1-0", published(0)], [b"1-1", published(4)]], LIKES: [[b"2-0", published(1)]]})
    head, rest = batch.split(2)
    assert (len(head), len(rest)) == (2, 1)
    assert head.records == batch.records[:2]
    assert rest.ids == [b"2-0"]
    assert batch.ids_by_stream() == {COMMENTS: [b"1-0", b"1-1"], LIKES: [b"2-0"]}
    assert not batches.Batch()


def test_the_entry_of_a_record_carries_the_envelope_as_published() -> None:
    raw = published(3)[5]
    batch, _ = decode({LIKES: [[b"2-7", published(3)]]})
    assert batch.entry(0) == Entry(LIKES, b"2-7", {naming.FIELD_EVENT: raw})
