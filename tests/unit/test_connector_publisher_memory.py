"""A buffered event costs its JSON's size: a burst's backlog must not weigh ten times that."""

from __future__ import annotations

import tracemalloc

from tiktok_service.connector.publisher import Publisher
from tiktok_service.connector.redis_client import Endpoint, RedisClient
from tiktok_service.domain import events

TEXT = {"text": "hi"}


def test_a_buffered_event_holds_about_its_json_and_no_more() -> None:
    publisher = Publisher(
        RedisClient(Endpoint()),  # never connected: nothing is flushed here
        livestream_id="ls-1",
        buffer_size=10_000,
        batch_size=2_000,
        livestream_maxlen=100,
        ttl_s=60,
    )
    user = events.User(7_123_456_789, "viewer_1", "Viewer One", "https://p16-sign.tiktokcdn.com/a.webp", 0, 12, 34)
    envelopes = [
        events.Envelope(
            str(7_276_755_484_373_311_970 + n), events.EventType.COMMENT, "ls-1", 1, 0, user, {"text": "hi"}
        )
        for n in range(1_000)
    ]
    size = len(envelopes[0].encode())
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for envelope in envelopes:
            assert publisher.offer(envelope)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_event = (after - before) / len(envelopes)
    # The JSON plus its bytes header and the buffer's tuple: well under 2x (orjson's own buffer is 8 KiB).
    assert per_event < 2 * size + 200, f"{per_event:.0f} bytes per buffered event of {size} bytes"
