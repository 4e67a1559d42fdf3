"""When an SSE subscriber missed entries Redis no longer holds (pure)."""

from __future__ import annotations

import orjson

from tiktok_service.api import sse


def test_a_subscriber_before_the_oldest_held_entry_of_a_trimmed_stream_missed_entries() -> None:
    assert sse.missed((5, 0), first_held=(40, 0), removed=True)


def test_nothing_is_missed_when_nothing_was_removed_or_the_subscriber_is_past_the_front() -> None:
    assert not sse.missed((0, 0), first_held=(40, 0), removed=False)
    assert not sse.missed((41, 0), first_held=(40, 0), removed=True)
    assert not sse.missed((5, 0), first_held=None, removed=True)


def test_the_gap_event_names_where_the_subscriber_was_and_where_it_resumes_without_an_id() -> None:
    wire = sse.gap_event((5, 1), (40, 0))

    lines = wire.decode().splitlines()
    assert "event: gap" in lines
    assert not any(line.startswith("id:") for line in lines)
    data = next(line for line in lines if line.startswith("data: "))
    assert orjson.loads(data[len("data: ") :]) == {"after": "5-1", "resume": "40-0", "reason": "trimmed"}
