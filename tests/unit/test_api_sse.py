"""SSE wire bytes and what a subscriber sends next (pure)."""

from __future__ import annotations

from collections import deque

import pytest

from tiktok_service.api import sse


def entry(position: str, event_type: str = "tiktok.comment") -> sse.Entry:
    return sse.encode_entry(position, event_type, '{"id":"' + position + '"}')


def test_an_entry_is_encoded_with_its_stream_id_type_and_cloudevent() -> None:
    wire = entry("1700000000000-3").wire

    assert wire == b'event: tiktok.comment\ndata: {"id":"1700000000000-3"}\nid: 1700000000000-3\n\n'


@pytest.mark.parametrize(("text", "parsed"), [("5-1", (5, 1)), ("0", (0, 0)), ("17-0", (17, 0))])
def test_stream_ids_parse_into_ordered_tuples(text: str, parsed: sse.StreamId) -> None:
    assert sse.parse_id(text) == parsed


@pytest.mark.parametrize("text", ["", "-", "1-", "a-1", "1-2-3", "$", "+", "1 -2", "99999999999999999999-0"])
def test_anything_but_a_stream_id_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="stream id"):
        sse.parse_id(text)


def test_newer_returns_only_entries_after_the_position_oldest_first() -> None:
    ring = deque([entry("1-0"), entry("2-0"), entry("2-1"), entry("3-0")])

    assert [e.position for e in sse.newer(ring, (2, 0))] == [(2, 1), (3, 0)]
    assert sse.newer(ring, (3, 0)) == []


def test_a_type_filter_skips_entries_but_moves_the_position_past_them() -> None:
    entries = [entry("1-0", "tiktok.like"), entry("2-0", "tiktok.gift"), entry("3-0", "tiktok.like")]

    chunk = sse.select(entries, (0, 0), {"tiktok.gift"}, limit=10)

    assert chunk.wire == entries[1].wire
    assert chunk.position == (3, 0)
    assert not chunk.live_ended


def test_a_chunk_holds_at_most_the_limit() -> None:
    entries = [entry(f"{i}-0") for i in range(1, 6)]

    chunk = sse.select(entries, (0, 0), None, limit=2)

    assert chunk.wire == entries[0].wire + entries[1].wire
    assert chunk.position == (2, 0)


def test_a_live_end_is_the_last_entry_sent() -> None:
    entries = [entry("1-0"), entry("2-0", "tiktok.live_end"), entry("3-0")]

    chunk = sse.select(entries, (0, 0), None, limit=10)

    assert chunk.live_ended
    assert chunk.position == (2, 0)
    assert chunk.wire == entries[0].wire + entries[1].wire


def test_the_end_event_has_no_id_so_a_resume_point_stays_on_the_last_real_event() -> None:
    assert sse.end_event("stopped") == b'event: end\ndata: {"reason":"stopped"}\n\n'
