"""The REAL TikTokLive 7 client receives every message kind the simulator sends, each exactly once as
the event class the library maps its method to."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
from TikTokLive.events import (
    DisconnectEvent,
    FollowEvent,
    LiveEndEvent,
    LivePauseEvent,
    LiveUnpauseEvent,
    SuperFanBoxEvent,
)
from TikTokLive.events.proto_events import EVENT_MAPPINGS

from tests.tiktoklive_recorder import Recorder
from tiktok_service_dev.simulator import Scenario
from tiktok_service_dev.simulator.kinds import EVERY_KIND_METHODS, EVERY_KIND_SIZE, sent_by_method
from tiktok_service_dev.simulator.scenario import EVERY_KIND

DEADLINE_S = 30.0
CUSTOM = (FollowEvent, LivePauseEvent, LiveUnpauseEvent, LiveEndEvent, DisconnectEvent, SuperFanBoxEvent)


RECORDED = (*EVENT_MAPPINGS.values(), *CUSTOM)


async def get_json(http: aiohttp.ClientSession, path: str, **params: str) -> Any:
    async with http.get(path, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def assert_each_exactly_once(rec: Recorder, sent: list[dict[str, Any]]) -> None:
    """Each sent message arrived once, as the class TikTokLive maps its method to, and nowhere else."""
    by_method = sent_by_method(sent)
    assert set(by_method) == set(EVERY_KIND_METHODS)
    for method, msg_ids in by_method.items():
        event_type = EVENT_MAPPINGS[method]
        received = Counter(rec.ids(event_type))
        assert [received[msg_id] for msg_id in msg_ids] == [1] * len(msg_ids), method  # exactly once each
        elsewhere = {i for t in EVENT_MAPPINGS.values() if t is not event_type for i in rec.ids(t)}
        assert not set(msg_ids) & elsewhere, method
    # The custom events TikTokLive derives from them, once each.
    assert len(rec.events[FollowEvent]) == 1
    assert len(rec.events[LivePauseEvent]) == 1 and len(rec.events[LiveUnpauseEvent]) == 1
    assert len(rec.events[SuperFanBoxEvent]) == 1


async def test_room_with_every_kind_reaches_the_client_once_each(sim, http, recorder) -> None:
    await sim.add_room("evie", Scenario(seed=21, rate=0, batch=16, every_kind=True, total=80, mix={"comment": 1}))
    rec = recorder("evie")
    await rec.client.start()
    await get_json(http, "/_sim/rooms/evie/wait", events="80", timeout=str(DEADLINE_S))
    log = (await get_json(http, "/_sim/rooms/evie/sent"))["messages"]
    every = [m for m in log if m["kind"] == EVERY_KIND]
    assert len(every) == EVERY_KIND_SIZE and list(dict.fromkeys(m["method"] for m in every)) == list(EVERY_KIND_METHODS)
    await rec.wait_for(lambda: {m["msg_id"] for m in log} <= rec.seen())
    assert_each_exactly_once(rec, every)
    assert rec.client.connected  # pause and unpause do not end the live
    assert not rec.events[LiveEndEvent]


async def test_send_all_then_end_over_http(sim, http, recorder) -> None:
    await sim.add_room("sam", Scenario(seed=22, rate=50, total=10, mix={"comment": 1, "like": 1}))
    rec = recorder("sam")
    await rec.client.start()
    await get_json(http, "/_sim/rooms/sam/wait", events="10", connected="1", timeout=str(DEADLINE_S))
    async with http.post("/_sim/rooms/sam/send", json={"methods": "all", "end": True}) as resp:
        assert resp.status == 200
        queued = (await resp.json())["queued"]
    assert len(queued) == EVERY_KIND_SIZE
    await get_json(http, "/_sim/rooms/sam/wait", injected=str(EVERY_KIND_SIZE), live_ends="1", timeout=str(DEADLINE_S))
    await rec.wait_for(lambda: bool(rec.events[DisconnectEvent]))
    assert_each_exactly_once(rec, queued)
    assert len(rec.events[LiveEndEvent]) == 1
    stats = await get_json(http, "/_sim/rooms/sam/stats")
    assert stats["injected_sent"] == EVERY_KIND_SIZE and stats["state"] == "ended"
    sent_every = [m for m in (await get_json(http, "/_sim/rooms/sam/sent"))["messages"] if m["kind"] == EVERY_KIND]
    assert [(m["method"], m["msg_id"], m["variant"]) for m in sent_every] == [
        (q["method"], q["msg_id"], q["variant"]) for q in queued
    ]


async def test_send_validates_its_body(sim, http) -> None:
    await sim.add_room("val", Scenario(seed=23))
    for body, status in (({"methods": ["WebcastNope"]}, 400), ({"methods": []}, 400), ({"end": "yes"}, 400)):
        async with http.post("/_sim/rooms/val/send", json=body) as resp:
            assert resp.status == status, body
    kinds = await get_json(http, "/_sim/kinds")
    assert kinds["every_kind_methods"] == list(EVERY_KIND_METHODS) and "realistic" in kinds["mix_presets"]
    async with http.post("/_sim/rooms/val/end") as resp:
        assert resp.status == 200
    async with http.post("/_sim/rooms/val/send", json={}) as resp:
        assert resp.status == 409
