"""The envelope: CloudEvents attributes, round trip, and clear errors on bad input."""

from __future__ import annotations

import orjson
import pytest

from tiktok_service.domain import events
from tiktok_service.domain.events import Envelope, EventType, MalformedEnvelope, User


def make(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "id": "7301234567890123456",
        "type": EventType.COMMENT,
        "livestream_id": "0d1f5a52-7a3c-4a8e-9a57-2c4bcbf0e001",
        "room_id": 7300000000000000001,
        "time_ms": 1_700_000_000_123,
        "user": User(42, "alice", "Alice"),
        "data": {"text": "hello"},
    }
    fields.update(overrides)
    return Envelope(**fields)  # type: ignore[arg-type]


def test_an_envelope_is_a_cloudevent_with_our_extensions() -> None:
    doc = make().to_cloudevent()
    assert doc["specversion"] == "1.0"
    assert doc["id"] == "7301234567890123456"
    assert doc["source"] == "/tiktok-service/livestreams/0d1f5a52-7a3c-4a8e-9a57-2c4bcbf0e001"
    assert doc["type"] == "tiktok.comment"
    assert doc["time"] == "2023-11-14T22:13:20.123Z"
    assert doc["schemaversion"] == events.SCHEMA_VERSION
    assert doc["roomid"] == "7300000000000000001"
    assert doc["data"] == {"user": {"id": "42", "unique_id": "alice", "nickname": "Alice"}, "text": "hello"}


def test_encoding_then_decoding_gives_back_the_same_envelope() -> None:
    original = make(type=EventType.GIFT, data={"gift_id": 5655, "repeat_count": 3})
    assert events.decode(original.encode()) == original


def test_an_envelope_without_user_round_trips() -> None:
    original = make(user=None, type=EventType.VIEWER, data={"viewer_count": 10})
    assert events.decode(original.encode()) == original


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({"specversion": "0.3"}), "specversion"),
        (orjson.dumps({**make().to_cloudevent(), "type": "tiktok.nonsense"}), "invalid envelope"),
        (orjson.dumps({**make().to_cloudevent(), "id": ""}), "id must be"),
        (orjson.dumps({**make().to_cloudevent(), "time": "yesterday"}), "invalid envelope"),
    ],
)
def test_undecodable_bytes_raise_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEnvelope, match=reason):
        events.decode(raw)


def test_times_keep_millisecond_precision() -> None:
    assert events.parse_time(events.format_time(1_700_000_000_007)) == 1_700_000_000_007


def test_a_user_with_every_optional_attribute_round_trips_and_absent_ones_stay_absent() -> None:
    rich = events.User(
        42,
        "alice",
        "Alice",
        avatar_url="https://p16/a.webp",
        follow_role=2,
        follower_count=10,
        following_count=3,
        is_moderator=True,
        is_subscriber=False,
        is_top_gifter=False,
        gifter_level=12,
        member_level=4,
        badges=(events.Badge("admin"), events.Badge("user_grade", 12, None, "https://b/12.png")),
    )
    original = make(user=rich)
    assert events.decode(original.encode()) == original
    assert original.to_cloudevent()["data"]["user"]["badges"][1] == {
        "scene": "user_grade",
        "level": 12,
        "image_url": "https://b/12.png",
    }
    assert make(user=User(1, "b", "B")).to_cloudevent()["data"]["user"] == {
        "id": "1",
        "unique_id": "b",
        "nickname": "B",
    }
