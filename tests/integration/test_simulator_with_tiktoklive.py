"""The REAL TikTokLive 7 client against the simulator, configured only through the library's settings.

These tests pin down both the simulator's fidelity and the library behaviour a connector has to
handle (which exception for which failure, whether DisconnectEvent is emitted).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import defaultdict
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from TikTokLive.client.errors import SignatureRateLimitError, UserNotFoundError, UserOfflineError
from TikTokLive.events import (
    CommentEvent,
    ConnectEvent,
    DisconnectEvent,
    FollowEvent,
    GiftEvent,
    JoinEvent,
    LikeEvent,
    LiveEndEvent,
    RoomUserSeqEvent,
    ShareEvent,
    UnknownEvent,
)
from websockets.exceptions import ConnectionClosedError

from tiktok_service_dev.simulator import Scenario
from tiktok_service_dev.simulator.fixtures import fixture_events, load_captured

DEADLINE_S = 20.0
RECORDED = (
    CommentEvent,
    ConnectEvent,
    DisconnectEvent,
    FollowEvent,
    GiftEvent,
    JoinEvent,
    LikeEvent,
    LiveEndEvent,
    RoomUserSeqEvent,
    ShareEvent,
    UnknownEvent,
)


async def sent(http: aiohttp.ClientSession, username: str) -> dict[str, Any]:
    async with http.get(f"/_sim/rooms/{username}/sent") as resp:
        assert resp.status == 200
        return await resp.json()


async def wait(http: aiohttp.ClientSession, username: str, **conditions: int) -> dict[str, Any]:
    query = {k: str(v) for k, v in conditions.items()} | {"timeout": str(DEADLINE_S)}
    async with http.get(f"/_sim/rooms/{username}/wait", params=query) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body["stats"]


async def task_outcome(task: asyncio.Task[None]) -> BaseException | None:
    """Wait for the client's connection task; its exception (if any) instead of raising it."""
    async with asyncio.timeout(DEADLINE_S):
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)
    return task.exception()


async def test_client_receives_exactly_what_the_simulator_sent(sim, http, recorder) -> None:
    mix = {"comment": 5, "gift": 3, "like": 1, "join": 1, "viewer": 1}
    room = await sim.add_room("alice", Scenario(seed=7, rate=400, batch=10, total=200, mix=mix))
    rec = recorder("alice")
    await rec.client.start()
    stats = await wait(http, "alice", events=200, enter_room_received=1, heartbeats_received=1, acks_matched=1)
    log = (await sent(http, "alice"))["messages"]
    assert len(log) == 200 and len({m["msg_id"] for m in log}) == 200
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in log:
        by_kind[m["kind"]].append(m)
    expected_ids = {m["msg_id"] for m in log}
    kinds = (CommentEvent, GiftEvent, LikeEvent, JoinEvent, RoomUserSeqEvent)
    await rec.wait_for(lambda: {e.common.msg_id for t in kinds for e in rec.of(t)} >= expected_ids)

    connect = rec.of(ConnectEvent)
    assert [(c.unique_id, c.room_id) for c in connect] == [("alice", room.room_id)]
    comments = rec.of(CommentEvent)
    # user.display_id, not user.unique_id: the ExtendedUser alias is only there if no plain
    # WebcastChatMessage was parsed earlier in the process (betterproto2 caches field classes on the
    # parent class, which the event subclasses then inherit).
    assert [(c.common.msg_id, c.content, c.user.display_id, c.user.nickname, c.user.id) for c in comments] == [
        (m["msg_id"], m["data"]["content"], m["user"]["unique_id"], m["user"]["nickname"], m["user"]["id"])
        for m in by_kind["comment"]
    ]
    gifts = rec.of(GiftEvent)
    gift_keys = ("gift_id", "gift_name", "diamond_count", "repeat_count", "repeat_end", "group_id")
    assert [
        (g.common.msg_id, g.gift.id, g.gift.name, g.gift.diamond_count, g.repeat_count, g.repeat_end, g.group_id)
        for g in gifts
    ] == [(m["msg_id"], *(m["data"][k] for k in gift_keys)) for m in by_kind["gift"]]
    assert [g.streaking for g in gifts] == [
        m["data"]["streakable"] and not m["data"]["repeat_end"] for m in by_kind["gift"]
    ]
    assert [(e.count, e.total) for e in rec.of(LikeEvent)] == [
        (m["data"]["count"], m["data"]["total"]) for m in by_kind["like"]
    ]
    assert [e.user.display_id for e in rec.of(JoinEvent)] == [m["user"]["unique_id"] for m in by_kind["join"]]
    assert [(e.total, e.total_user) for e in rec.of(RoomUserSeqEvent)] == [
        (m["data"]["total"], m["data"]["total_user"]) for m in by_kind["viewer"]
    ]
    assert all(abs(m["create_time"] - time.time() * 1000) < 60_000 for m in log)
    # The client talked back like on TikTok: one im_enter_room, heartbeats, an ack per need_ack frame.
    assert stats["enter_room_received"] == 1
    assert stats["heartbeats_received"] >= 1
    assert stats["acks_matched"] >= 1 and stats["sign_requests"] == 1
    assert rec.client.connected


async def test_follow_and_share_become_follow_and_share_events(sim, http, recorder) -> None:
    await sim.add_room("bob", Scenario(seed=3, rate=300, total=40, mix={"follow": 1, "share": 1}))
    rec = recorder("bob")
    await rec.client.start()
    await wait(http, "bob", events=40)
    log = (await sent(http, "bob"))["messages"]
    follows = [m["msg_id"] for m in log if m["kind"] == "follow"]
    shares = [m["msg_id"] for m in log if m["kind"] == "share"]
    await rec.wait_for(lambda: len(rec.of(FollowEvent)) + len(rec.of(ShareEvent)) >= 40)
    assert rec.ids(FollowEvent) == follows and follows
    assert rec.ids(ShareEvent) == shares and shares
    assert all(e.user.display_id for e in rec.of(FollowEvent) + rec.of(ShareEvent))


async def test_live_end_emits_live_end_and_disconnect(sim, http, recorder) -> None:
    room = await sim.add_room("carol", Scenario(seed=5, rate=300, live_end_after=25))
    rec = recorder("carol")
    task = await rec.client.start()
    await rec.wait_for(lambda: bool(rec.of(DisconnectEvent)))
    assert await task_outcome(task) is None
    assert len(rec.of(LiveEndEvent)) == 1
    assert not rec.client.connected
    log = (await sent(http, "carol"))["messages"]
    assert log[-1]["kind"] == "live_end" and rec.of(LiveEndEvent)[0].common.msg_id == log[-1]["msg_id"]
    assert room.stats.events_sent == 25
    # The client hung up by itself after LiveEnd; afterwards the creator shows as offline.
    assert await room.wait_until(lambda: room.stats.connected == 0, DEADLINE_S)
    with pytest.raises(UserOfflineError):
        await recorder("carol").client.start()


async def test_offline_user_raises_user_offline_until_live(sim, http, recorder) -> None:
    await sim.add_room("dave", Scenario(seed=1, offline=True))
    with pytest.raises(UserOfflineError):
        await recorder("dave").client.start()
    async with http.post("/_sim/rooms/dave/live", json={"live": True}) as resp:
        assert resp.status == 200
    rec = recorder("dave")
    await rec.client.start()
    await rec.wait_for(lambda: bool(rec.of(CommentEvent)))


@pytest.mark.parametrize("configured", [True, False])
async def test_unknown_user_raises_user_not_found(sim, recorder, configured: bool) -> None:
    if configured:
        await sim.add_room("ghost", Scenario(not_found=True))
    with pytest.raises(UserNotFoundError):
        await recorder("ghost").client.start()


async def test_sign_429_raises_rate_limit_error_with_retry_after(sim, recorder) -> None:
    room = await sim.add_room("erin", Scenario(seed=2, sign_429=1, retry_after_s=42))
    with pytest.raises(SignatureRateLimitError) as caught:
        await recorder("erin").client.start()
    assert caught.value.retry_after == 42
    assert abs(caught.value.reset_time - (time.time() + 42)) < 5
    assert "42 seconds" in str(caught.value)
    rec = recorder("erin")
    await rec.client.start()  # the budget of 429s is spent: the next attempt connects
    await rec.wait_for(lambda: bool(rec.of(ConnectEvent)))
    assert (room.stats.sign_requests, room.stats.sign_429_sent) == (2, 1)


async def test_heartbeats_follow_the_handshake_ping_interval(sim, http, recorder) -> None:
    await sim.add_room("fay", Scenario(seed=2, rate=5, ping_interval_s=0.05))
    rec = recorder("fay")
    await rec.client.start()
    stats = await wait(http, "fay", heartbeats_received=4, enter_room_received=1)
    assert stats["heartbeats_received"] >= 4


async def test_captured_fixtures_replay_without_killing_the_client(sim, http, recorder) -> None:
    await sim.add_room("gus", Scenario(seed=4, rate=300, fixtures=True, total=25, mix={"comment": 1}))
    rec = recorder("gus")
    await rec.client.start()
    await wait(http, "gus", events=25)
    log = (await sent(http, "gus"))["messages"]
    assert [m["kind"] for m in log[:5]] == ["fixture"] * 5
    generated = [m["msg_id"] for m in log[5:]]
    await rec.wait_for(lambda: set(generated) <= set(rec.ids(CommentEvent)))
    fixture_ids = {e.method: e.msg_id for e in fixture_events(load_captured())}
    assert fixture_ids["WebcastGiftMessage"] in rec.ids(GiftEvent)
    assert fixture_ids["WebcastSocialMessage"] in rec.ids(ShareEvent)  # display key "..._share"
    assert fixture_ids["WebcastMemberMessage"] in rec.ids(JoinEvent)
    # Schema drift: LikeMessage.bin is really a member message; its like "count" decodes as a list.
    drifted = rec.of(LikeEvent)
    assert len(drifted) == 1 and not isinstance(drifted[0].count, int)
    assert rec.client.connected


async def test_abrupt_drop_kills_the_task_and_reconnect_replays_history(sim, http, recorder) -> None:
    room = await sim.add_room("hal", Scenario(seed=6, rate=300, batch=4, drop_after=20, history=6, mix={"comment": 1}))
    first = recorder("hal")
    task = await first.client.start()
    outcome = await task_outcome(task)
    assert isinstance(outcome, ConnectionClosedError)  # "no close frame received or sent"
    assert first.of(DisconnectEvent) == []  # no DisconnectEvent on an abrupt drop
    before_drop = [m["msg_id"] for m in (await sent(http, "hal"))["messages"]]
    assert len(before_drop) == 20 and first.ids(CommentEvent) == before_drop

    second = recorder("hal")
    await second.client.start()
    await wait(http, "hal", events=30)
    await second.wait_for(lambda: len(second.ids(CommentEvent)) >= 16)
    # The sign fetch replays the last 6 messages: duplicates the consumer must drop by msg_id.
    assert second.ids(CommentEvent)[:6] == before_drop[-6:]
    assert room.stats.history_replayed == 6 and room.stats.drops == 1


@pytest.mark.parametrize(
    ("kind", "survives", "error"),
    [
        ("truncated", True, None),
        ("unknown_method", True, None),
        ("bad_gzip", False, zlib.error),
        ("not_pushframe", False, ValidationError),
        ("oversized", False, None),  # client closes with 1009; task ends normally + DisconnectEvent
    ],
)
async def test_malformed_frames(sim, http, recorder, kind: str, survives: bool, error: type | None) -> None:
    await sim.add_room("ivy", Scenario(seed=8, rate=300, batch=5, total=30, malformed=[kind], mix={"comment": 1}))
    rec = recorder("ivy")
    task = await rec.client.start()
    await wait(http, "ivy", malformed_sent=1)
    if survives:
        await wait(http, "ivy", events=30)
        log = (await sent(http, "ivy"))["messages"]
        await rec.wait_for(lambda: rec.ids(CommentEvent) == [m["msg_id"] for m in log])
        assert rec.client.connected
        if kind == "unknown_method":
            assert rec.of(UnknownEvent)
        return
    outcome = await task_outcome(task)
    if error is None:
        assert outcome is None and rec.of(DisconnectEvent)
    else:
        assert isinstance(outcome, error) and not rec.of(DisconnectEvent)
