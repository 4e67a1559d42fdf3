"""One chaos scenario end to end: a scripted room, a Livestream, one fault, and what got stored.

The room sends a known set of events (a fixed seed, a fixed count, no gift streaks so that one
TikTok message is one event id). A third of the way in, the fault is injected; the function that
injects it returns when the fault is over. From then on the scenario waits on conditions only:
the recovery time is how long until every event the room had sent by the fault's end is stored,
and the scenario ends when the room has sent everything and PostgreSQL holds all of it (or has
not changed for `settle_s`: what is missing then is lost).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import redis

from benchmarks.chaos.stack import Stack
from benchmarks.chaos.tally import Tally, tally
from tests.e2e_support import livestream, unique, wait_for
from tests.support import expected_events
from tiktok_service.domain import naming
from tiktok_service_dev.simulator.scenario import Scenario

#: Every plain kind, no gifts: a gift streak is several messages but one event, which would make
#: "sent" and "stored" count different things.
MIX: dict[str, float] = {"comment": 50.0, "like": 15.0, "join": 10.0, "follow": 4.0, "share": 3.0, "viewer": 5.0}
RATE = 50.0  # events per second
_POLL_S = 0.5


@dataclass(frozen=True)
class Options:
    events: int  # events per scenario
    postgres_down_s: float
    lag_events: int  # events published while the persister is stopped
    settle_s: float  # no new row for this long (with the room done) ends a scenario
    start_timeout_s: float = 90.0


@dataclass
class Run:
    """What a fault acts on: the stack and this scenario's Livestream and room."""

    stack: Stack
    name: str
    username: str
    uid: str
    options: Options

    def sent_ids(self) -> set[str]:
        return set(expected_events(self.stack.sent(self.username)))

    def rows(self) -> dict[str, int] | None:
        """event id -> rows in `events` (None while PostgreSQL does not answer)."""
        try:
            return self.stack.bg.run(_rows(self.stack.database_url, self.uid), timeout=15)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return None

    def stream_ids(self) -> list[str]:
        with redis.Redis.from_url(self.stack.redis_url, socket_timeout=10) as reader:
            entries = reader.xrange(naming.livestream_stream(self.uid))
        markers = {b"tiktok.connect", b"tiktok.disconnect"}
        return [f[naming.FIELD_ID].decode() for _, f in entries if f[naming.FIELD_TYPE] not in markers]


async def _rows(database_url: str, uid: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        found = await conn.fetch(
            "SELECT event_id, count(*) AS n FROM events WHERE livestream_id = $1 GROUP BY event_id", uuid.UUID(uid)
        )
    finally:
        await conn.close()
    return {row["event_id"]: int(row["n"]) for row in found}


@dataclass(frozen=True)
class Fault:
    """A named fault: `inject` returns when the fault is over, with a note for the table."""

    name: str
    inject: Callable[[Run], str]
    after: Callable[[Run], None] | None = None  # restores what the fault took away, after measuring
    rate: float = RATE  # the room's events per second (0 = as fast as it can)
    inherent: str = ""  # why a loss is inherent, if one is (README)


def _stored(run: Run, ids: set[str]) -> bool:
    rows = run.rows()
    return rows is not None and all(rows.get(i, 0) >= 1 for i in ids)


def _settled(run: Run, total: int, settle_s: float) -> Callable[[], bool]:
    """True once the room sent everything and every id is stored, or nothing new came for `settle_s`."""
    state: dict[str, Any] = {"count": -1, "since": time.monotonic()}

    def check() -> bool:
        if run.stack.events_sent(run.username) < total:
            state["since"] = time.monotonic()
            return False
        rows = run.rows()
        if rows is None:
            state["since"] = time.monotonic()
            return False
        if run.sent_ids() <= set(rows):
            return True
        if len(rows) != state["count"]:
            state["count"], state["since"] = len(rows), time.monotonic()
        quiet_s: float = time.monotonic() - state["since"]
        return quiet_s > settle_s

    return check


def run_scenario(stack: Stack, fault: Fault, options: Options) -> Tally:
    """Drive one scenario (a fresh room and Livestream) through `fault`; the Livestream is deleted after."""
    username = unique("chaos_")
    total = options.events
    stack.add_room(username, Scenario(rate=fault.rate, total=total, mix=dict(MIX), seed=7))
    restart = {"maxRestarts": 1000, "backoffBaseSeconds": 1, "backoffCapSeconds": 2}
    # The livestream's own stream keeps every event of the run, so doubles are looked for in all of it.
    retention = {"livestreamStreamMaxLen": 1_000_000}
    body = livestream(fault.name, username, restartPolicy=restart, retention=retention)
    uid = stack.cluster.create(body)["metadata"]["uid"]
    run = Run(stack, fault.name, username, uid, options)
    try:
        explain = stack.cluster.explain(fault.name)
        wait_for(
            lambda: stack.events_sent(username) >= total // 3,
            what=f"{fault.name}: a third of the events sent",
            timeout=options.start_timeout_s,
            explain=explain,
        )
        note = fault.inject(run)
        ended = time.monotonic()
        recovery = _recovery_s(run, ended)
        total = _room_total(run)
        wait_for(
            _settled(run, total, options.settle_s),
            what=f"{fault.name}: every event sent and stored (or settled)",
            timeout=300,
            explain=explain,
        )
        rows = run.rows() or {}
        died = stack.restart_dead_persister()
        note = f"{note}; {died}" if died else note
        return tally(fault.name, run.sent_ids(), rows, run.stream_ids(), recovery_s=recovery, note=note)
    finally:
        try:
            stack.cluster.delete(fault.name)
            wait_for(partial(stack.cluster.gone, fault.name), what=f"{fault.name} to be gone", timeout=120)
        finally:
            if fault.after is not None:
                fault.after(run)


def _recovery_s(run: Run, ended: float) -> float | None:
    """Seconds from `ended` until events flow again: the first ones the room sends after the fault
    (and all before them) are stored. None if that does not happen within the deadline."""
    stack = run.stack
    count = stack.events_sent(run.username)
    try:
        if count < _room_total(run):
            wait_for(lambda: stack.events_sent(run.username) > count, what="the room to send again", timeout=180)
        wait_for(partial(_stored, run, run.sent_ids()), what="events sent after the fault stored", timeout=180)
    except AssertionError:
        return None
    return time.monotonic() - ended


def _room_total(run: Run) -> int:
    """How many events the room sends in all (a fault may have added some: `Room.resume(more=...)`)."""
    limit = run.stack.bg.call(lambda: run.stack.simulator.room(run.username).stats_json()["limit_total"])
    return max(run.options.events, int(limit or 0))
