"""Pure persister decisions: entry -> row, deterministic keys, poison detection, cursors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import orjson
import pytest

from tiktok_service.database import migrate
from tiktok_service.domain import events, naming
from tiktok_service.persister import rows
from tiktok_service_dev import sample_events

CR_UID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"


def fields_of(envelope: events.Envelope) -> dict[bytes, bytes]:
    return sample_events.entry_fields(envelope)


def test_an_entry_maps_to_a_row_with_every_column_from_the_envelope() -> None:
    envelope = sample_events.sample_envelope(5, livestream_id=CR_UID, event_type=events.EventType.GIFT)
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
    first = rows.record_from_fields(fields_of(sample_events.sample_envelope(1, livestream_id=CR_UID)))
    again = rows.record_from_fields(fields_of(sample_events.sample_envelope(1, livestream_id=CR_UID)))
    other = rows.record_from_fields(fields_of(sample_events.sample_envelope(2, livestream_id=CR_UID)))
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


@pytest.mark.parametrize("time", [1_700_000_000_000, 1.5, None, ["2026-11-24T20:30:00Z"], {"t": 1}, "yesterday"])
def test_a_well_formed_entry_whose_time_is_not_a_timestamp_is_poison_not_a_crash(time: object) -> None:
    doc = orjson.loads(sample_events.sample_envelope(1, livestream_id=CR_UID).encode())
    doc["time"] = time
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields({naming.FIELD_EVENT: orjson.dumps(doc)})
    assert caught.value.category == "malformed_envelope"
    assert "time" in caught.value.reason or "isoformat" in caught.value.reason


def test_a_room_id_beyond_bigint_is_poison_rather_than_a_failed_batch() -> None:
    envelope = sample_events.sample_envelope(1, livestream_id=CR_UID, room_id=2**63)
    with pytest.raises(rows.PoisonEntry) as caught:
        rows.record_from_fields(fields_of(envelope))
    assert caught.value.category == "unstorable"


def test_a_nul_anywhere_is_stored_as_the_replacement_character_not_refused() -> None:
    envelope = sample_events.sample_envelope(1, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
    envelope.data["text"] = "bad\x00comment"
    envelope.data["nested"] = {"k\x00": ["x\x00"]}
    envelope.id = "7301\x00"
    assert envelope.user is not None
    envelope.user = dataclasses.replace(envelope.user, unique_id="al\x00ice")
    record = rows.record_from_fields(fields_of(envelope))

    assert record[2] == "7301\ufffd" and record[6] == "al\ufffdice"
    payload = orjson.loads(record[rows.PAYLOAD])
    assert payload["data"]["text"] == "bad\ufffdcomment"
    assert payload["data"]["nested"] == {"k\ufffd": ["x\ufffd"]}
    assert "\\u0000" not in record[rows.PAYLOAD]
    assert rows.record_from_fields(fields_of(envelope)) == record  # the same key on every delivery


def test_an_escaped_backslash_u0000_text_is_not_mistaken_for_a_nul() -> None:
    envelope = sample_events.sample_envelope(1, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
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


def full_path(raw: bytes) -> rows.Record | tuple[str, str]:
    """What the full decoder makes of `raw`: its record, or its poison verdict."""
    try:
        return rows.record_from_envelope(events.decode(raw), raw)
    except events.MalformedEnvelope as exc:
        return ("malformed_envelope", str(exc))
    except rows.PoisonEntry as exc:
        return (exc.category, exc.reason)


def entry_verdict(raw: bytes) -> rows.Record | tuple[str, str]:
    try:
        return rows.record_from_fields({naming.FIELD_EVENT: raw})
    except rows.PoisonEntry as exc:
        return (exc.category, exc.reason)


def envelope_variants() -> list[events.Envelope]:
    found = [
        sample_events.sample_envelope(n, livestream_id=CR_UID, event_type=t) for n, t in enumerate(events.EventType)
    ]
    found.append(events.Envelope(id="c-1", type=events.EventType.CONNECT, livestream_id=CR_UID, room_id=1, time_ms=0))
    found.append(sample_events.sample_envelope(7, livestream_id="demo"))
    found.append(sample_events.sample_envelope(8, livestream_id=CR_UID, room_id=2**63 - 1))
    unicode = sample_events.sample_envelope(9, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
    unicode.data["comment"] = 'héllo 🎉 "quoted" \\ back\\slash'
    found.append(unicode)
    late = sample_events.sample_envelope(10, livestream_id=CR_UID)
    late.time_ms = 4_102_444_799_999  # 2099-12-31T23:59:59.999Z, the last fast-path millisecond
    found.append(late)
    return found


@pytest.mark.parametrize("envelope", envelope_variants(), ids=lambda e: f"{e.type.value}-{e.id}-{e.livestream_id}")
def test_the_fast_path_gives_exactly_the_record_of_the_full_decoder(envelope: events.Envelope) -> None:
    raw = envelope.encode()
    fast = rows.fast_record(raw)
    assert fast is not None
    assert fast == full_path(raw)
    assert [type(value) for value in fast] == [type(value) for value in rows.record_from_envelope(envelope, raw)]
    assert fast[-1].tzinfo is dt.UTC


def _envelope_doc(**changes: object) -> dict[str, object]:
    doc = sample_events.sample_envelope(3, livestream_id=CR_UID, event_type=events.EventType.GIFT).to_cloudevent()
    doc.update(changes)
    return doc


def _user_doc(**changes: object) -> dict[str, object]:
    user: dict[str, object] = {"id": "6800000000000000003", "unique_id": "viewer_3", "nickname": "V"}
    user.update(changes)
    return user


UNUSUAL_ENVELOPES = {
    # valid, but not in the shape connectors publish: the full decoder takes them
    "time with microseconds": _envelope_doc(time="2026-01-01T00:00:00.000123Z"),
    "time with an offset": _envelope_doc(time="2026-01-01T01:00:00.000+01:00"),
    "time without fraction": _envelope_doc(time="2026-01-01T00:00:00Z"),
    "time before 1970": _envelope_doc(time="1969-12-31T23:59:59.999Z"),
    "time after 2099": _envelope_doc(time="2100-01-01T00:00:00.000Z"),
    "time with another separator": _envelope_doc(time="2026-01-01 00:00:00.000Z"),
    "data without user": _envelope_doc(data={"count": 1}),
    "numeric roomid": _envelope_doc(roomid=7),
    "numeric user id": _envelope_doc(data={"user": _user_doc(id=6800000000000000003)}),
    "numeric unique_id": _envelope_doc(data={"user": _user_doc(unique_id=42)}),
    "data as pairs": _envelope_doc(data=[["count", 1]]),
    # invalid: the full decoder gives the reason
    "no nickname": _envelope_doc(data={"user": {"id": "1", "unique_id": "u"}}),
    "unknown type": _envelope_doc(type="tiktok.nope"),
    "unhashable type": _envelope_doc(type=["tiktok.gift"]),
    "empty id": _envelope_doc(id=""),
    "numeric id": _envelope_doc(id=7),
    "no livestreamid": {k: v for k, v in _envelope_doc().items() if k != "livestreamid"},
    "schemaversion 2": _envelope_doc(schemaversion=2),
    "roomid not a number": _envelope_doc(roomid="seven"),
    "roomid beyond bigint": _envelope_doc(roomid=str(2**63)),
    "user id beyond bigint": _envelope_doc(data={"user": _user_doc(id=str(-(2**63) - 1))}),
    "user id not a number": _envelope_doc(data={"user": _user_doc(id="x")}),
    "user not an object": _envelope_doc(data={"user": "viewer"}),
    "NUL in id": _envelope_doc(id="a\x00b"),
    "NUL in username": _envelope_doc(data={"user": _user_doc(unique_id="a\x00b")}),
    "NUL in payload": _envelope_doc(data={"user": None, "comment": "a\x00b"}),
    "time not a time": _envelope_doc(time="yesterday"),
    "a JSON array": [1, 2],
    "a JSON string": "event",
}


@pytest.mark.parametrize("doc", list(UNUSUAL_ENVELOPES.values()), ids=list(UNUSUAL_ENVELOPES))
def test_an_envelope_the_fast_path_does_not_vouch_for_gets_the_full_decoders_verdict(doc: object) -> None:
    raw = orjson.dumps(doc)
    assert rows.fast_record(raw) is None
    assert entry_verdict(raw) == full_path(raw)


def test_bytes_that_are_not_json_get_the_full_decoders_verdict() -> None:
    assert rows.fast_record(b"\xff{") is None
    assert entry_verdict(b"\xff{") == full_path(b"\xff{")


def test_the_payload_position_names_the_payload_column() -> None:
    assert rows.COLUMNS[rows.PAYLOAD] == "payload"


def test_a_lone_surrogate_escape_is_stored_as_the_replacement_character_not_refused() -> None:
    envelope = sample_events.sample_envelope(1, livestream_id=CR_UID, event_type=events.EventType.COMMENT)
    envelope.data["text"] = "cut emoji PLACEHOLDER"
    raw = envelope.encode().replace(b"PLACEHOLDER", b"\\ud83d").replace(b'"hello 1"', b'"\\ud83d\\ude00 \\udc00"')
    fields = {**fields_of(envelope), naming.FIELD_EVENT: raw}

    record = rows.record_from_fields(fields)

    payload = orjson.loads(record[rows.PAYLOAD])
    assert payload["data"]["text"] == "cut emoji \ufffd"
    assert rows.record_from_fields(fields) == record


def test_repairing_surrogates_keeps_numbers_exactly_as_written() -> None:
    repaired = rows.without_lone_surrogates(b'{"a": "\\udc00", "n": 1.50, "big": 123456789012345678901234567890}')

    assert repaired == '{"a":"\ufffd","n":1.50,"big":123456789012345678901234567890}'.encode()
    assert rows.without_lone_surrogates(b'{"a": "\\udc00", "n": NaN}') is None
