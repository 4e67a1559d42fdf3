"""Pure persister decisions: entry -> row, deterministic keys, poison detection, cursors."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest

from tiktok_service.domain import events, naming
from tiktok_service.persister import migrate, rows, sample

CR_UID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"


def fields_of(envelope: events.Envelope) -> dict[bytes, bytes]:
    return sample.entry_fields(envelope)


def test_an_entry_maps_to_a_row_with_every_column_from_the_envelope() -> None:
    envelope = sample.sample_envelope(5, livestream_id=CR_UID, event_type=events.EventType.GIFT)
    record = rows.record_from_fields(fields_of(envelope))
    as_dict = dict(zip(rows.COLUMNS, record, strict=True))
    assert as_dict["livestream_id"] == uuid.UUID(CR_UID)
    assert as_dict["event_id"] == envelope.id
    assert as_dict["event_type"] == "tiktok.gift"
    assert as_dict["room_id"] == envelope.room_id
    assert envelope.user is not None
    assert as_dict["user_id"] == envelope.user.id
    assert as_dict["username"] == envelope.user.unique_id
    assert orjson.loads(as_dict["payload"]) == envelope.to_cloudevent()
    assert as_dict["timestamp"] == dt.datetime(2026, 1, 1, 0, 0, 0, 5000, tzinfo=dt.UTC)


def test_an_event_without_a_user_has_null_user_columns() -> None:
    envelope = events.Envelope(id="c-1", type=events.EventType.CONNECT, livestream_id=CR_UID, room_id=1, time_ms=0)
    record = dict(zip(rows.COLUMNS, rows.record_from_fields(fields_of(envelope)), strict=True))
    assert record["user_id"] is None
    assert record["username"] is None


def test_the_same_event_always_gets_the_same_key_and_other_events_do_not() -> None:
    first = rows.record_from_fields(fields_of(sample.sample_envelope(1, livestream_id=CR_UID)))
    again = rows.record_from_fields(fields_of(sample.sample_envelope(1, livestream_id=CR_UID)))
    other = rows.record_from_fields(fields_of(sample.sample_envelope(2, livestream_id=CR_UID)))
    assert first[0] == again[0]
    assert first[0] != other[0]
    assert first[0] == uuid.uuid5(rows.EVENTS_NAMESPACE, f"{CR_UID}:{first[2]}")


def test_the_same_event_id_in_two_livestreams_gets_two_keys() -> None:
    other_uid = "9e1d2c3b-4a5f-4e6d-8c7b-0a1b2c3d4e5f"
    assert rows.event_key(uuid.UUID(CR_UID), "42") != rows.event_key(uuid.UUID(other_uid), "42")


def test_a_canonical_uuid_livestream_id_is_stored_as_it_is() -> None:
    assert rows.livestream_key(CR_UID) == uuid.UUID(CR_UID)


@pytest.mark.parametrize("livestream_id", ["demo", CR_UID.upper(), CR_UID.replace("-", ""), "{" + CR_UID + "}"])
def test_any_other_livestream_id_maps_to_a_stable_uuid5_of_itself(livestream_id: str) -> None:
    key = rows.livestream_key(livestream_id)
    assert key == uuid.uuid5(rows.LIVESTREAMS_NAMESPACE, livestream_id)
    assert key == rows.livestream_key(livestream_id)
    assert key != uuid.UUID(CR_UID)


def test_an_entry_without_an_event_field_is_poison() -> None:
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields({naming.FIELD_TYPE: b"tiktok.comment"})
    assert caught.value.category == "missing_event"


def test_an_entry_trimmed_from_the_stream_is_poison() -> None:
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields({})
    assert caught.value.category == "entry_deleted"


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"specversion": "0.3"}'])
def test_an_undecodable_envelope_is_poison_with_the_decoder_reason(raw: bytes) -> None:
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields({naming.FIELD_EVENT: raw})
    assert caught.value.category == "malformed_envelope"
    assert caught.value.reason


def test_a_room_id_beyond_bigint_is_poison_rather_than_a_failed_batch() -> None:
    envelope = sample.sample_envelope(1, livestream_id=CR_UID, room_id=2**63)
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields(fields_of(envelope))
    assert caught.value.category == "unstorable"


def test_a_nul_character_in_the_payload_is_poison_because_jsonb_cannot_store_it() -> None:
    envelope = sample.sample_envelope(1, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
    envelope.data["comment"] = "bad\x00comment"
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields(fields_of(envelope))
    assert caught.value.category == "unstorable"


def test_an_escaped_backslash_u0000_text_is_not_mistaken_for_a_nul() -> None:
    envelope = sample.sample_envelope(1, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
    envelope.data["comment"] = "literally \\u0000"
    record = rows.record_from_fields(fields_of(envelope))
    assert "\\\\u0000" in record[7]


def test_a_cursor_survives_encoding_to_a_token_and_back() -> None:
    cursor = rows.Cursor(dt.datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC), uuid.uuid4())
    assert rows.Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize("token", ["", "abc", "12_zz", "99999999999999999999999_" + "0" * 32])
def test_a_token_we_did_not_make_is_refused(token: str) -> None:
    with pytest.raises(ValueError):
        rows.Cursor.decode(token)


def test_shipped_migrations_are_numbered_and_ordered() -> None:
    versions = [m.version for m in migrate.available_migrations()]
    assert versions[0] == "0001_initial"
    assert versions == sorted(versions)


def test_only_migrations_not_yet_applied_are_pending() -> None:
    available = [migrate.Migration("0001_a", ""), migrate.Migration("0002_b", "")]
    assert [m.version for m in migrate.pending_migrations(available, {"0001_a"})] == ["0002_b"]
