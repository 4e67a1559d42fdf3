"""The SQL layer on its own: bulk insert, keyset pages, the livestreams table."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tiktok_service.database import events_repository, migrate
from tiktok_service.database import livestreams_repository as livestreams
from tiktok_service.database.livestreams_repository import LivestreamStatus
from tiktok_service.domain import events
from tiktok_service.persister import rows
from tiktok_service_dev import sample_events

CR_UID = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"
OTHER_UID = "9e1d2c3b-4a5f-4e6d-8c7b-0a1b2c3d4e5f"


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate.migrate(database_url)
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


def records(n: int, livestream_id: str = CR_UID, *, ties: bool = False) -> list[rows.Record]:
    """`ties`: events share timestamps in pairs, so ordering must fall back on the id."""
    found = []
    for i in range(n):
        envelope = sample_events.sample_envelope(i, livestream_id=livestream_id)
        if ties:
            envelope.time_ms = sample_events.BASE_TIME_MS + i // 2
        found.append(rows.record_from_envelope(envelope, envelope.encode()))
    return found


async def test_inserting_returns_the_number_of_new_rows_and_skips_existing_ones(
    conn: asyncpg.Connection,
) -> None:
    batch = records(50)
    assert await events_repository.insert_events(conn, batch[:30]) == 30
    assert await events_repository.insert_events(conn, batch) == 20
    assert await events_repository.insert_events(conn, batch + batch) == 0
    assert await events_repository.count_events(conn) == 50


async def test_a_batch_containing_the_same_event_twice_stores_it_once(conn: asyncpg.Connection) -> None:
    batch = records(3)
    assert await events_repository.insert_events(conn, [*batch, batch[0]]) == 3


async def test_an_empty_batch_does_nothing(conn: asyncpg.Connection) -> None:
    assert await events_repository.insert_events(conn, []) == 0


async def staging_table_exists(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT to_regclass('pg_temp.events_staging') IS NOT NULL") is True


async def test_a_batch_of_new_events_is_copied_straight_into_events_without_staging(
    conn: asyncpg.Connection,
) -> None:
    assert await events_repository.insert_events(conn, records(40)) == 40
    assert not await staging_table_exists(conn)
    assert await events_repository.count_events(conn) == 40


async def test_a_batch_holding_stored_events_falls_back_to_the_merge_and_stores_only_the_new_ones(
    conn: asyncpg.Connection,
) -> None:
    batch = records(40)
    await events_repository.insert_events(conn, batch[:10])
    assert await events_repository.insert_events(conn, batch) == 30
    assert await staging_table_exists(conn)
    assert await events_repository.count_events(conn) == 40
    assert not conn.is_in_transaction()


async def test_a_batch_expected_to_hold_duplicates_is_merged_right_away(conn: asyncpg.Connection) -> None:
    batch = records(20)
    assert await events_repository.insert_events(conn, batch[:5], expect_new=False) == 5
    assert await events_repository.insert_events(conn, batch, expect_new=False) == 15
    assert await events_repository.count_events(conn) == 20


async def test_inside_a_callers_transaction_a_failed_copy_does_not_abort_it(conn: asyncpg.Connection) -> None:
    batch = records(20)
    await events_repository.insert_events(conn, batch[:5])
    async with conn.transaction():
        assert await events_repository.insert_events(conn, batch) == 15
        assert await events_repository.count_events(conn) == 20  # the transaction is still usable
    assert await events_repository.count_events(conn) == 20


async def test_rows_postgresql_refuses_fail_the_batch_as_a_data_error_whichever_path_it_takes(
    conn: asyncpg.Connection,
) -> None:
    batch = records(10)
    assert batch[3][2] == "7400000000000000003"
    await conn.execute("ALTER TABLE events ADD CONSTRAINT refuse_one CHECK (event_id <> '7400000000000000003')")
    for expect_new in (True, False):
        with pytest.raises(asyncpg.CheckViolationError) as caught:
            await events_repository.insert_events(conn, batch, expect_new=expect_new)
        assert events_repository.is_data_error(caught.value)
    assert await events_repository.count_events(conn) == 0


async def test_paging_returns_every_event_of_the_livestream_once_in_time_order(conn: asyncpg.Connection) -> None:
    await events_repository.insert_events(conn, records(251, ties=True) + records(40, OTHER_UID))
    livestream = rows.livestream_key(CR_UID)
    seen: list[events_repository.EventRow] = []
    cursor: rows.Cursor | None = None
    for _ in range(100):  # bounded: 251 rows / 40 per page = 7 pages
        page = await events_repository.events_page(conn, livestream, after=cursor, limit=40)
        seen.extend(page.events)
        if page.next_cursor is None:
            break
        cursor = rows.Cursor.decode(page.next_cursor.encode())  # as an API client would
    assert len(seen) == 251
    assert len({row.id for row in seen}) == 251
    assert [(r.timestamp, r.id) for r in seen] == sorted((r.timestamp, r.id) for r in seen)
    assert {row.livestream_id for row in seen} == {livestream}


async def test_a_page_that_ends_exactly_at_the_last_row_says_there_is_no_next_page(
    conn: asyncpg.Connection,
) -> None:
    await events_repository.insert_events(conn, records(10))
    page = await events_repository.events_page(conn, rows.livestream_key(CR_UID), limit=10)
    assert len(page.events) == 10
    assert page.next_cursor is None


async def test_paging_filters_by_type_and_by_a_half_open_time_window(conn: asyncpg.Connection) -> None:
    await events_repository.insert_events(conn, records(100))
    livestream = rows.livestream_key(CR_UID)
    comments = await events_repository.events_page(conn, livestream, limit=1000, types=[events.EventType.COMMENT.value])
    assert len(comments.events) == 25
    assert {row.event_type for row in comments.events} == {"tiktok.comment"}
    start = dt.datetime.fromtimestamp((sample_events.BASE_TIME_MS + 10) / 1000, tz=dt.UTC)
    end = dt.datetime.fromtimestamp((sample_events.BASE_TIME_MS + 20) / 1000, tz=dt.UTC)
    window = await events_repository.events_page(conn, livestream, limit=1000, since=start, until=end)
    assert [row.event_id for row in window.events] == [str(7_400_000_000_000_000_000 + n) for n in range(10, 20)]


async def test_paging_seeks_through_the_livestream_time_index(conn: asyncpg.Connection) -> None:
    await events_repository.insert_events(conn, records(200))
    await conn.execute("ANALYZE events")
    await conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        row[0]
        for row in await conn.fetch(
            "EXPLAIN " + events_repository._PAGE,
            rows.livestream_key(CR_UID),
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            uuid.UUID(int=0),
            None,
            None,
            None,
            10,
        )
    )
    assert "events_livestream_time_idx" in plan
    assert "Sort" not in plan


async def test_a_livestream_row_is_created_then_updated_keeping_what_an_update_does_not_say(
    conn: asyncpg.Connection,
) -> None:
    uid = uuid.UUID(CR_UID)
    created = await livestreams.upsert_livestream(conn, id=uid, username="alice", workspace_id="ws1")
    assert created.status is LivestreamStatus.PENDING
    assert created.event_counts == {}
    live = await livestreams.upsert_livestream(
        conn,
        id=uid,
        username="alice",
        status=LivestreamStatus.LIVE,
        room_id=7,
        viewer_count=10,
        event_counts={"tiktok.comment": 3},
    )
    later = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=LivestreamStatus.LIVE)
    assert (later.room_id, later.viewer_count, later.workspace_id) == (7, 10, "ws1")
    assert later.event_counts == {"tiktok.comment": 3}
    assert later.created_at == created.created_at
    assert later.updated_at >= live.updated_at
    assert await livestreams.get_livestream(conn, uid) == later


@pytest.mark.parametrize("terminal", [LivestreamStatus.STOPPED, LivestreamStatus.ENDED, LivestreamStatus.FAILED])
async def test_a_terminal_status_sets_ended_at_once_and_a_resumed_livestream_clears_it(
    conn: asyncpg.Connection, terminal: LivestreamStatus
) -> None:
    uid = uuid.UUID(CR_UID)
    live = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=LivestreamStatus.LIVE)
    assert live.ended_at is None
    ended = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=terminal)
    assert ended.ended_at is not None
    again = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=terminal)
    assert again.ended_at == ended.ended_at  # the first end time stays
    resumed = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=LivestreamStatus.CONNECTING)
    assert resumed.ended_at is None
    assert await livestreams.get_livestream(conn, uid) == resumed
    ended_again = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=terminal)
    assert ended_again.ended_at is not None
    assert ended_again.ended_at > ended.ended_at


async def test_a_livestream_row_created_in_a_terminal_status_is_ended_from_the_start(
    conn: asyncpg.Connection,
) -> None:
    created = await livestreams.upsert_livestream(
        conn, id=uuid.UUID(CR_UID), username="alice", status=LivestreamStatus.FAILED
    )
    assert created.ended_at is not None


async def test_a_closed_livestream_that_resumes_is_no_longer_ended(conn: asyncpg.Connection) -> None:
    uid = uuid.UUID(CR_UID)
    await livestreams.upsert_livestream(conn, id=uid, username="alice", status=LivestreamStatus.LIVE)
    closed = await livestreams.close_livestream(conn, uid, status=LivestreamStatus.STOPPED)
    assert closed is not None
    assert closed.ended_at is not None
    resumed = await livestreams.upsert_livestream(conn, id=uid, username="alice", status=LivestreamStatus.LIVE)
    assert (resumed.status, resumed.ended_at) == (LivestreamStatus.LIVE, None)


async def test_closing_a_livestream_records_the_first_end_time_and_a_terminal_status(
    conn: asyncpg.Connection,
) -> None:
    uid = uuid.UUID(CR_UID)
    await livestreams.upsert_livestream(conn, id=uid, username="alice", status=LivestreamStatus.LIVE)
    first_end = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    closed = await livestreams.close_livestream(conn, uid, reason="LiveEnded", ended_at=first_end)
    again = await livestreams.close_livestream(
        conn, uid, status=LivestreamStatus.FAILED, ended_at=dt.datetime.now(dt.UTC)
    )
    assert closed is not None
    assert again is not None
    assert (closed.status, closed.reason, closed.ended_at) == (LivestreamStatus.ENDED, "LiveEnded", first_end)
    assert again.ended_at == first_end
    with pytest.raises(ValueError):
        await livestreams.close_livestream(conn, uid, status=LivestreamStatus.LIVE)


async def test_an_unknown_livestream_is_none(conn: asyncpg.Connection) -> None:
    assert await livestreams.get_livestream(conn, uuid.uuid4()) is None
    assert await livestreams.close_livestream(conn, uuid.uuid4()) is None
