"""A feed's ring: what stays in memory, and how subscribers are woken (no Redis needed)."""

from __future__ import annotations

import asyncio

from tiktok_service.api import feeds, sse


def entries(*positions: int) -> list[sse.Entry]:
    return [sse.encode_entry(f"{p}-0", "tiktok.like", "{}") for p in positions]


def test_the_ring_keeps_the_newest_entries_and_remembers_where_it_begins() -> None:
    feed = feeds.Feed("ls", ring_size=3)
    feed.start_at((0, 0))

    feed.append(entries(1, 2, 3, 4, 5))

    assert [e.position for e in feed.ring] == [(3, 0), (4, 0), (5, 0)]
    assert feed.floor == (2, 0)
    assert feed.last == (5, 0)


async def test_a_waiting_subscriber_wakes_when_an_entry_arrives() -> None:
    feed = feeds.Feed("ls", ring_size=8)
    feed.start_at((0, 0))
    waiting = asyncio.create_task(feed.wait((0, 0)))
    await asyncio.sleep(0)  # let it start waiting

    feed.append(entries(1))

    await asyncio.wait_for(waiting, 5)


async def test_a_waiting_subscriber_wakes_when_the_feed_ends() -> None:
    feed = feeds.Feed("ls", ring_size=8)
    feed.start_at((0, 0))
    waiting = asyncio.create_task(feed.wait((0, 0)))
    await asyncio.sleep(0)

    feed.finish(feeds.STOPPED)

    await asyncio.wait_for(waiting, 5)
    assert feed.over


async def test_a_subscriber_with_something_to_send_does_not_wait() -> None:
    feed = feeds.Feed("ls", ring_size=8)
    feed.start_at((0, 0))
    feed.append(entries(1))

    await asyncio.wait_for(feed.wait((0, 0)), 1)
