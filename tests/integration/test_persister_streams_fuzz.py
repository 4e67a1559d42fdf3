"""Whatever lands in the shared streams, the persister never exits and loses nothing valid.

Hypothesis writes arbitrary entries next to valid events (with any text a viewer could
type, NULs and emoji cut in half included) into real Redis, and a real persister drains
them into a real PostgreSQL: every valid event is stored exactly once, every entry is
either stored or dead-lettered, and nothing stays pending.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import hypothesis
import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import strategies as st

from tiktok_service.database import migrate
from tiktok_service.domain import events, naming
from tiktok_service.persister import rows
from tiktok_service_dev.persister_harness import pending_entries, quick_settings, run_burst

pytestmark = pytest.mark.invalid_events  # poison is the point: the teardown's schema check does not apply

STREAMS = naming.all_type_streams()
BIGINT = 2**63 - 1
CUT_EMOJI = b"\\ud83d"  # the first half of a surrogate pair, escaped as a UTF-16 client writes it
MARK = "@@CUT@@"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-BIGINT, BIGINT) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@dataclass(frozen=True)
class Generated:
    """One entry to write, and the row it must become if it is a valid event."""

    stream: str
    fields: dict[bytes, bytes]
    expected: tuple[uuid.UUID, str] | None  # (livestream key, event_id as stored); None: may go either way


@st.composite
def valid_events(draw: st.DrawFn, index: int) -> Generated:
    event_type = draw(st.sampled_from(list(events.EventType)))
    livestream_id = draw(st.text(min_size=1, max_size=40))
    event_id = f"{index}:{draw(st.text(max_size=30))}"
    user = draw(
        st.none()
        | st.builds(
            events.User,
            id=st.integers(-BIGINT - 1, BIGINT),
            unique_id=st.text(max_size=24),
            nickname=st.text(max_size=30),
        )
    )
    data = draw(st.dictionaries(st.text(max_size=8).filter(lambda key: key != "user"), json_values, max_size=4))
    cut = draw(st.booleans())
    if cut:
        data["text"] = draw(st.text(max_size=10)) + MARK
    envelope = events.Envelope(
        id=event_id,
        type=event_type,
        livestream_id=livestream_id,
        room_id=draw(st.integers(-BIGINT - 1, BIGINT)),
        time_ms=draw(st.integers(0, 253_402_300_799_999)),
        user=user,
        data=data,
    )
    raw = envelope.encode()
    if cut:
        raw = raw.replace(MARK.encode(), CUT_EMOJI)
    stored_id = event_id.replace("\x00", rows.NUL_REPLACEMENT)
    return Generated(
        naming.type_stream(event_type),
        {naming.FIELD_TYPE: event_type.value.encode(), naming.FIELD_ID: b"x", naming.FIELD_EVENT: raw},
        (rows.livestream_key(livestream_id.replace("\x00", rows.NUL_REPLACEMENT)), stored_id),
    )


@st.composite
def mutated_events(draw: st.DrawFn, index: int) -> Generated:
    """A valid event with one attribute (or its user's) replaced by any JSON value."""
    valid = draw(valid_events(index))
    doc: dict[str, Any] = orjson.loads(valid.fields[naming.FIELD_EVENT].replace(CUT_EMOJI, b"?"))
    key = draw(st.sampled_from(["specversion", "schemaversion", "type", "livestreamid", "roomid", "time", "data"]))
    doc[key] = draw(json_values)
    if draw(st.booleans()) and isinstance(doc.get("data"), dict):
        doc["data"]["user"] = draw(json_values | st.fixed_dictionaries({"id": json_values, "unique_id": json_values}))
    return Generated(valid.stream, {**valid.fields, naming.FIELD_EVENT: orjson.dumps(doc)}, None)


@st.composite
def arbitrary_entries(draw: st.DrawFn, index: int) -> Generated:
    fields = draw(
        st.dictionaries(st.binary(max_size=12), st.binary(max_size=60), min_size=1, max_size=4)
        | st.fixed_dictionaries({naming.FIELD_EVENT: st.binary(max_size=200)})
    )
    return Generated(draw(st.sampled_from(STREAMS)), fields, None)


@st.composite
def stream_contents(draw: st.DrawFn) -> list[Generated]:
    kinds = draw(st.lists(st.sampled_from([valid_events, mutated_events, arbitrary_entries]), min_size=1, max_size=25))
    return [draw(kind(index)) for index, kind in enumerate(kinds)]


async def stored_keys(database_url: str) -> list[tuple[uuid.UUID, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [(row["livestream_id"], row["event_id"]) for row in await conn.fetch("SELECT * FROM events")]
    finally:
        await conn.close()


async def reset(redis_client: aioredis.Redis, database_url: str) -> None:
    await redis_client.flushall()
    await migrate.migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("TRUNCATE events")
    finally:
        await conn.close()


@hypothesis.settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(entries=stream_contents())
async def test_any_stream_content_is_stored_or_dead_lettered_and_every_valid_event_stored_once(
    redis_client: aioredis.Redis, redis_url: str, database_url: str, entries: list[Generated]
) -> None:
    await reset(redis_client, database_url)
    entry_ids = []
    for entry in entries:
        entry_ids.append(await redis_client.xadd(entry.stream, entry.fields))  # type: ignore[arg-type]

    await run_burst(quick_settings(redis_url, database_url, batch_size=7), within_s=60)  # raises if it died

    stored = await stored_keys(database_url)
    letters = await redis_client.xrange(naming.DEAD_LETTER_STREAM)
    dead = [(fields[b"stream"].decode(), fields[b"entry_id"]) for _, fields in letters]
    for entry, entry_id in zip(entries, entry_ids, strict=True):
        if entry.expected is not None:
            assert stored.count(entry.expected) == 1, f"valid event not stored once: {entry.fields}"
            assert (entry.stream, entry_id) not in dead
    assert len(dead) == len(set(dead))
    assert len(stored) + len(dead) == len(entries), {"stored": stored, "dead": [f[b"reason"] for _, f in letters]}
    assert await pending_entries(redis_client) == 0
