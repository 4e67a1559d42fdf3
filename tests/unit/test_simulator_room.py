"""Room state machine and send loop, with in-memory sockets (no network)."""

from __future__ import annotations

import pytest
from TikTokLive.client.ws.ws_utils import extract_webcast_response_message
from TikTokLive.proto import WebcastPushFrame

from tests.fake_socket import FakeSocket
from tiktok_service_dev.simulator.room import Room, RoomError, RoomState
from tiktok_service_dev.simulator.scenario import Scenario

WAIT_S = 5.0


async def started(username: str = "alice", **scenario: object) -> Room:
    room = Room(username, Scenario.from_dict({"seed": 1, "rate": 0, **scenario}))
    room.start()
    return room


def sent_ids(room: Room) -> list[int]:
    return [m["msg_id"] for m in room.sent_json()["messages"]]


async def test_nothing_is_sent_without_a_socket() -> None:
    room = await started(total=5)
    try:
        assert not await room.wait_until(lambda: room.stats.events_sent > 0, 0.2)
    finally:
        await room.stop()


async def test_total_is_exact_and_resume_sends_more() -> None:
    room = await started(batch=7, total=20)
    sock = FakeSocket()
    room.attach(sock)
    try:
        assert await room.wait_until(lambda: room.stats.events_sent == 20, WAIT_S)
        assert not await room.wait_until(lambda: room.stats.events_sent > 20, 0.2)
        assert [m.msg_id for m in sock.messages()] == sent_ids(room)
        assert (
            max(len(extract_webcast_response_message(WebcastPushFrame().parse(f)).messages) for f in sock.frames) == 7
        )
        room.resume(more=5)
        assert await room.wait_until(lambda: room.stats.events_sent == 25, WAIT_S)
        assert not await room.wait_until(lambda: room.stats.events_sent > 25, 0.2)
    finally:
        await room.stop()


async def test_live_end_after_sends_control_message_and_ends() -> None:
    room = await started(batch=4, live_end_after=10)
    sock = FakeSocket()
    room.attach(sock)
    try:
        assert await room.wait_until(lambda: room.state is RoomState.ENDED, WAIT_S)
        messages = sock.messages()
        assert len(messages) == 11
        assert messages[-1].method == "WebcastControlMessage"
        sent = room.sent_json()["messages"]
        assert sent[-1]["kind"] == "live_end" and sent[-1]["data"] == {"action": 3}
        assert room.stats.events_sent == 10 and room.stats.messages_sent == 11
        with pytest.raises(RoomError):
            await room.end_live()
    finally:
        await room.stop()


async def test_drop_repeats_and_history_replays_last_messages() -> None:
    room = await started(batch=3, drop_after=10, drop_repeat=True, history=6, ack_every=0)
    first = FakeSocket()
    room.attach(first)
    try:
        assert await room.wait_until(lambda: room.stats.drops == 1, WAIT_S)
        assert first.aborted and room.stats.events_sent == 10 and room.stats.connected == 0
        history = room.history_messages()
        assert len(history) == 6
        second = FakeSocket()
        room.attach(second)
        assert await room.wait_until(lambda: room.stats.drops == 2, WAIT_S)
        assert room.stats.events_sent == 20
        assert len(set(sent_ids(room))) == 20
    finally:
        await room.stop()


async def test_failed_send_carries_events_to_the_next_socket() -> None:
    room = await started(total=5)
    try:
        room.attach(FakeSocket(fail=True))
        assert await room.wait_until(lambda: room.stats.connected == 0, WAIT_S)
        assert room.stats.events_sent == 0
        good = FakeSocket()
        room.attach(good)
        assert await room.wait_until(lambda: room.stats.events_sent == 5, WAIT_S)
        expected = [e.msg_id for e in Room("x", Scenario(seed=1)).generator.take(5)]
        assert [m.msg_id for m in good.messages()] == expected == sent_ids(room)
    finally:
        await room.stop()


async def test_stall_until_resume() -> None:
    room = await started(batch=5, stall_after=10, stall_s=0)
    room.attach(FakeSocket())
    try:
        assert await room.wait_until(lambda: room.stats.events_sent == 10, WAIT_S)
        assert not await room.wait_until(lambda: room.stats.events_sent > 10, 0.2)
        assert room.stats_json()["stalled"] is True
        room.resume()
        assert await room.wait_until(lambda: room.stats.events_sent > 10, WAIT_S)
    finally:
        await room.stop()


async def test_rate_is_respected() -> None:
    room = await started(rate=50, batch=50)
    room.attach(FakeSocket())
    try:
        assert await room.wait_until(lambda: room.stats.events_sent >= 1, WAIT_S)
        assert not await room.wait_until(lambda: room.stats.events_sent > 15, 0.2)
    finally:
        await room.stop()


async def test_offline_room_goes_live_by_itself() -> None:
    room = await started(offline=True, live_after_s=0.05)
    try:
        assert room.state is RoomState.OFFLINE
        assert await room.wait_until(lambda: room.state is RoomState.LIVE, WAIT_S)
    finally:
        await room.stop()


async def test_not_found_room_cannot_go_live() -> None:
    room = await started(not_found=True)
    try:
        with pytest.raises(RoomError):
            await room.set_live(True)
    finally:
        await room.stop()


async def test_sign_429_budget() -> None:
    room = await started(sign_429=2)
    try:
        assert [room.take_sign_slot() for _ in range(4)] == [False, False, True, True]
        assert (room.stats.sign_requests, room.stats.sign_429_sent) == (4, 2)
    finally:
        await room.stop()


async def test_sent_log_limit_forgets_oldest() -> None:
    room = await started(total=30, batch=10, sent_log_limit=12)
    room.attach(FakeSocket())
    try:
        assert await room.wait_until(lambda: room.stats.events_sent == 30, WAIT_S)
        log = room.sent_json()
        assert (log["forgotten"], log["count"], log["first_index"]) == (18, 12, 18)
        assert room.sent_json(since=25)["count"] == 5
    finally:
        await room.stop()


async def test_malformed_once_each_kind() -> None:
    kinds = ["truncated", "unknown_method", "not_pushframe"]
    room = await started(total=20, batch=2, malformed=kinds)
    room.attach(FakeSocket())
    try:
        assert await room.wait_until(lambda: room.stats.events_sent == 20, WAIT_S)
        assert [m["kind"] for m in room.sent_json()["malformed"]] == kinds
    finally:
        await room.stop()


async def test_client_frames_are_counted() -> None:
    from TikTokLive.proto import HeartBeatMessage

    room = await started()
    try:
        hb = bytes(WebcastPushFrame(payload_type="hb", payload=bytes(HeartBeatMessage(room_id=1))))
        reply = room.on_client_frame(hb)
        assert reply is not None and WebcastPushFrame().parse(reply).payload_type == "hb"
        room.on_client_frame(bytes(WebcastPushFrame(payload_type="im_enter_room")))
        room.on_client_frame(bytes(WebcastPushFrame(payload_type="ack", log_id=99)))
        room.on_client_frame(b"\x08")  # garbage
        s = room.stats
        assert (s.heartbeats_received, s.enter_room_received, s.acks_received, s.acks_matched) == (1, 1, 1, 0)
        assert s.other_client_frames == 1
    finally:
        await room.stop()
