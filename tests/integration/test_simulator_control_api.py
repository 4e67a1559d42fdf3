"""The simulator's HTTP surface with a plain aiohttp client: TikTok routes, push socket, /_sim/ API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import aiohttp
import pytest
from TikTokLive.client.errors import UserNotFoundError, UserOfflineError
from TikTokLive.client.web.routes.fetch_room_id_api import FetchRoomIdAPIRoute
from TikTokLive.client.web.routes.fetch_room_id_live_html import FetchRoomIdLiveHTMLRoute
from TikTokLive.client.ws.ws_utils import extract_webcast_response_message
from TikTokLive.proto import ProtoMessageFetchResult, WebcastControlMessage, WebcastPushFrame

from tiktok_service_dev.simulator import Scenario, SimulatorConfig, SimulatorServer, serve
from tiktok_service_dev.simulator.tiktok_routes import WS_PATH

DEADLINE_S = 10.0


async def put_room(http: aiohttp.ClientSession, username: str, **scenario: Any) -> dict[str, Any]:
    async with http.put(f"/_sim/rooms/{username}", json=scenario) as resp:
        body = await resp.json()
        assert resp.status in (200, 201), body
        return body


async def wait(http: aiohttp.ClientSession, username: str, deadline_s: float = DEADLINE_S, **cond: int) -> int:
    params = {k: str(v) for k, v in cond.items()} | {"timeout": str(deadline_s)}
    async with http.get(f"/_sim/rooms/{username}/wait", params=params) as resp:
        await resp.read()
        return resp.status


async def sign_fetch(http: aiohttp.ClientSession, room_id: int) -> ProtoMessageFetchResult:
    async with http.get("/webcast/fetch", params={"room_id": str(room_id), "client": "test"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-protobuf"
        assert resp.headers["X-Set-TT-Cookie"]
        return ProtoMessageFetchResult().parse(await resp.read())


async def open_socket(http: aiohttp.ClientSession, room_id: int) -> aiohttp.ClientWebSocketResponse:
    first = await sign_fetch(http, room_id)
    params = {**first.route_params, "room_id": str(room_id)}
    return await http.ws_connect(first.push_server, params=params, protocols=("echo-protocol",))


async def read_messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
    """Read frames until ``count`` messages arrived (decoded with the library)."""
    out: list[Any] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(out) < count:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            frame = WebcastPushFrame().parse(msg.data)
            if frame.payload_type == "msg":
                out.extend(extract_webcast_response_message(frame).messages)
    return out


async def test_room_crud_and_validation(http: aiohttp.ClientSession) -> None:
    async with http.put("/_sim/rooms/alice", json={"seed": 1}) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert created["username"] == "alice" and created["state"] == "live" and created["scenario"]["seed"] == 1
    async with http.put("/_sim/rooms/alice", json={"seed": 2, "offline": True}) as resp:
        assert resp.status == 200 and (await resp.json())["state"] == "offline"
    async with http.get("/_sim/rooms") as resp:
        assert [r["username"] for r in (await resp.json())["rooms"]] == ["alice"]
    async with http.put("/_sim/rooms/bad", json={"mix": {"nope": 1}}) as resp:
        assert resp.status == 400 and "nope" in (await resp.json())["error"]
    async with http.put("/_sim/rooms/bad", data=b"{not json") as resp:
        assert resp.status == 400
    async with http.get("/_sim/rooms/alice/wait", params={"bogus": "1"}) as resp:
        assert resp.status == 400
    async with http.delete("/_sim/rooms/alice") as resp:
        assert resp.status == 200
    async with http.delete("/_sim/rooms/alice") as resp:
        assert resp.status == 404
    async with http.get("/_sim/rooms/alice/stats") as resp:
        assert resp.status == 404
    await put_room(http, "ghost", not_found=True)
    async with http.post("/_sim/rooms/ghost/live", json={"live": True}) as resp:
        assert resp.status == 409


async def test_tiktok_http_routes_parse_with_the_library(http: aiohttp.ClientSession, sim: SimulatorServer) -> None:
    live = await put_room(http, "live_one", seed=1)
    await put_room(http, "off_one", seed=2, offline=True)
    await put_room(http, "nobody", not_found=True)
    async with http.get("/@live_one/live") as resp:
        assert FetchRoomIdLiveHTMLRoute.parse_room_id(await resp.text()) == str(live["room_id"])
    async with http.get("/@off_one/live") as resp:
        with pytest.raises(UserOfflineError):
            FetchRoomIdLiveHTMLRoute.parse_room_id(await resp.text())
    for who in ("nobody", "never_configured"):
        async with http.get(f"/@{who}/live") as resp:
            with pytest.raises(UserNotFoundError):
                FetchRoomIdLiveHTMLRoute.parse_room_id(await resp.text())
        async with http.get("/api-live/user/room/", params={"uniqueId": who}) as resp:
            assert (await resp.json())["message"] == "user_not_found"
    async with http.get("/api-live/user/room/", params={"uniqueId": "live_one"}) as resp:
        assert FetchRoomIdAPIRoute.parse_room_id(await resp.json()) == str(live["room_id"])
    off_id = sim.room("off_one").room_id
    async with http.get("/webcast/room/check_alive/", params={"room_ids": f"{live['room_id']},{off_id},1"}) as resp:
        assert [d["alive"] for d in (await resp.json())["data"]] == [True, False, False]

    first = await sign_fetch(http, live["room_id"])
    assert first.is_first and first.cursor and first.route_params
    assert first.push_server == sim.base_url.replace("http://", "ws://") + WS_PATH
    async with http.get("/webcast/fetch", params={"room_id": str(off_id)}) as resp:
        assert resp.status == 404
    async with http.get("/webcast/fetch", params={"room_id": "123"}) as resp:
        assert resp.status == 404


async def test_sign_429_headers(http: aiohttp.ClientSession) -> None:
    room = await put_room(http, "limited", sign_429=1, retry_after_s=7)
    async with http.get("/webcast/fetch", params={"room_id": str(room["room_id"])}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "7" and resp.headers["RateLimit-Remaining"] == "7"
        assert int(resp.headers["RateLimit-Reset"]) > 0
        assert "7 seconds" in (await resp.json())["message"]
    await sign_fetch(http, room["room_id"])


async def test_stall_until_resume(http: aiohttp.ClientSession) -> None:
    room = await put_room(http, "staller", seed=3, rate=0, batch=5, stall_after=10, stall_s=0)
    async with await open_socket(http, room["room_id"]) as ws:
        assert await wait(http, "staller", events=10) == 200
        assert await wait(http, "staller", deadline_s=0.3, events=11) == 408
        async with http.post("/_sim/rooms/staller/resume") as resp:
            assert resp.status == 200
        assert await wait(http, "staller", events=30) == 200
        assert len(await read_messages(ws, 30)) >= 30


async def test_total_then_resume_more(http: aiohttp.ClientSession) -> None:
    room = await put_room(http, "counter", seed=4, rate=0, total=10)
    async with await open_socket(http, room["room_id"]):
        assert await wait(http, "counter", events=10) == 200
        assert await wait(http, "counter", deadline_s=0.3, events=11) == 408
        async with http.post("/_sim/rooms/counter/resume", json={"more": 5}) as resp:
            assert (await resp.json())["limit_total"] == 15
        assert await wait(http, "counter", events=15) == 200
        assert await wait(http, "counter", deadline_s=0.3, events=16) == 408


async def test_drop_endpoint_aborts_without_close_frame(http: aiohttp.ClientSession) -> None:
    room = await put_room(http, "dropper", seed=5, rate=50)
    async with await open_socket(http, room["room_id"]) as ws:
        await read_messages(ws, 1)
        async with http.post("/_sim/rooms/dropper/drop") as resp:
            assert (await resp.json())["dropped"] == 1
        async with asyncio.timeout(DEADLINE_S):
            while (msg := await ws.receive()).type is aiohttp.WSMsgType.BINARY:
                pass
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        assert ws.close_code == 1006  # abnormal closure: no close frame


async def test_end_endpoint_sends_control_message(http: aiohttp.ClientSession) -> None:
    room = await put_room(http, "ender", seed=6, rate=20)
    async with await open_socket(http, room["room_id"]) as ws:
        await read_messages(ws, 1)
        async with http.post("/_sim/rooms/ender/end") as resp:
            assert (await resp.json()) == {"delivered": True, "state": "ended"}
        async with asyncio.timeout(DEADLINE_S):
            while True:
                messages = await read_messages(ws, 1)
                if messages[-1].method == "WebcastControlMessage":
                    break
        assert WebcastControlMessage().parse(messages[-1].payload).action == 3
    async with http.post("/_sim/rooms/ender/end") as resp:
        assert resp.status == 409
    async with http.post("/_sim/rooms/ender/live", json={"live": True}) as resp:
        assert (await resp.json())["state"] == "live"


async def test_many_rooms_one_port_and_broadcast_to_every_socket(http: aiohttp.ClientSession) -> None:
    a = await put_room(http, "room_a", seed=1, rate=0, total=0)
    b = await put_room(http, "room_b", seed=2, rate=0, total=5)
    assert a["room_id"] != b["room_id"]
    async with (
        await open_socket(http, a["room_id"]) as ws1,
        await open_socket(http, a["room_id"]) as ws2,
        await open_socket(http, b["room_id"]) as ws_b,
    ):
        assert await wait(http, "room_a", connected=2) == 200
        async with http.post("/_sim/rooms/room_a/resume", json={"more": 20}) as resp:
            assert resp.status == 200
        one, two = await read_messages(ws1, 20), await read_messages(ws2, 20)
        assert [m.msg_id for m in one] == [m.msg_id for m in two]
        async with http.get("/_sim/rooms/room_a/sent") as resp:
            assert [m["msg_id"] for m in (await resp.json())["messages"]] == [m.msg_id for m in one]
        other = await read_messages(ws_b, 5)
        assert {m.msg_id for m in other}.isdisjoint({m.msg_id for m in one})
    async with http.get("/_sim/rooms/room_a/stats") as resp:
        stats = await resp.json()
    assert stats["connections_opened"] == 2 and stats["events_sent"] == 20 and stats["frames_sent"] == 1


async def test_sign_api_key_and_auto_created_rooms() -> None:
    config = SimulatorConfig(port=0, sign_api_key="secret", auto_create_rooms=True)
    async with SimulatorServer(config) as server, aiohttp.ClientSession(base_url=server.base_url) as http:
        async with http.get("/@anyone_at_all/live") as resp:
            room_id = FetchRoomIdLiveHTMLRoute.parse_room_id(await resp.text())
        async with http.get("/webcast/fetch", params={"room_id": room_id}) as resp:
            assert resp.status == 401
        async with http.get("/webcast/fetch", params={"room_id": room_id}, headers={"X-Api-Key": "secret"}) as resp:
            assert resp.status == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_runs_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    task = asyncio.create_task(serve(SimulatorConfig(port=port, rooms={"zed": Scenario(seed=1)})))
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
            while True:  # wait for the listener, with a deadline
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"http://127.0.0.1:{port}/_sim/health") as resp:
                        if resp.status == 200:
                            assert (await resp.json())["rooms"] == 1
                            break
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert f"listening on http://127.0.0.1:{port}" in capsys.readouterr().out
