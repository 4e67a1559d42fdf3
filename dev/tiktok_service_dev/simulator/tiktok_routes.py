"""The TikTok-facing HTTP and WebSocket endpoints, shaped like what TikTokLive 7.0.1 parses.

Connection flow of the real client, and the route answering each step:

1. ``GET {app}/@{user}/live`` - HTML with ``<script id="SIGI_STATE">`` JSON; ``LiveRoom`` missing means
   "no such user" (UserNotFoundError), ``liveRoomUserInfo.user.status == 4`` means offline.
2. fallback ``GET {app}/api-live/user/room/?uniqueId=`` - JSON, ``message: "user_not_found"``.
3. ``GET {webcast}/room/check_alive/?room_ids=`` - ``{"data": [{"alive": bool, "room_id": ...}]}``.
4. ``GET {sign}/webcast/fetch?room_id=`` (the Euler sign server) - raw ``ProtoMessageFetchResult``
   bytes, not gzipped, with a mandatory ``X-Set-TT-Cookie`` header; or 429 with rate-limit headers.
5. WebSocket to the fetch result's ``push_server`` with its ``route_params`` and ``room_id``.

With ``fetch_room_info``, ``GET {webcast}/room/info/?room_id=`` (withheld from anonymous viewers of
an age-restricted room). The failure scenarios (``Scenario.captcha``, ``handshake_blocked``,
``close_code``, ``age_restricted``) answer these steps as TikTok does when it refuses; their
answers are built in ``faults.py``, their per-room counters live here (``_Faults``).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from . import faults
from .messages import encode_fetch_result
from .registry import RoomRegistry
from .room import Room, RoomState, wall_ms

log = logging.getLogger(__name__)

WS_PATH = "/webcast/im/ws_proxy/ws_reuse_supplement/"
REGISTRY_KEY = web.AppKey("registry", RoomRegistry)
MAX_CLIENT_FRAME = 1024 * 1024
_STATUS_LIVE, _STATUS_OFFLINE = 2, 4
_CLOSE_WAIT_S = 24 * 3600.0  # a close scenario waits at most this long for its events


@dataclass(slots=True)
class _Faults:
    """How often each failure scenario of a room has struck so far."""

    captcha_pages: int = 0
    captcha_api: int = 0
    handshakes_refused: int = 0
    sockets_closed: int = 0


_FAULTS: weakref.WeakKeyDictionary[Room, _Faults] = weakref.WeakKeyDictionary()


def _faults(room: Room) -> _Faults:
    found = _FAULTS.get(room)
    if found is None:
        found = _FAULTS[room] = _Faults()
    return found


def fault_counts(room: Room) -> dict[str, int]:
    """What the failure scenarios did to `room` so far (for tests and the control API)."""
    found = _faults(room)
    return {name: getattr(found, name) for name in _Faults.__slots__}


def add_tiktok_routes(app: web.Application) -> None:
    app.router.add_get("/@{username}/live", live_page)
    app.router.add_get("/api-live/user/room/", api_user_room)
    app.router.add_get("/api-live/user/room", api_user_room)
    app.router.add_get("/webcast/room/info/", room_info)
    app.router.add_get("/webcast/room/info", room_info)
    app.router.add_get("/webcast/room/check_alive/", check_alive)
    app.router.add_get("/webcast/room/check_alive", check_alive)
    app.router.add_get("/webcast/fetch", sign_fetch)
    app.router.add_get("/webcast/fetch/", sign_fetch)
    app.router.add_get(WS_PATH, websocket)


def _registry(request: web.Request) -> RoomRegistry:
    return request.app[REGISTRY_KEY]


def _owner(room: Room) -> dict[str, Any]:
    status = _STATUS_LIVE if room.state is RoomState.LIVE else _STATUS_OFFLINE
    return {
        "id": str(room.owner_id),
        "uniqueId": room.username,
        "nickname": room.username.replace("_", " ").title(),
        "secUid": f"MS4wLjABAAAA-sim-{room.owner_id}",
        "roomId": "" if room.scenario.no_room else str(room.room_id),
        "status": status,
    }


def _live_room(room: Room) -> dict[str, Any]:
    status = _STATUS_LIVE if room.state is RoomState.LIVE else _STATUS_OFFLINE
    return {
        "status": status,
        "title": f"{room.username} is live (simulated)",
        "startTime": room.started_ms // 1000,
        "liveRoomStats": {"userCount": room.stats.connected},
    }


async def live_page(request: web.Request) -> web.Response:
    """The creator's ``/@user/live`` page; only the SIGI_STATE script matters to the client."""
    username = request.match_info["username"]
    room = _registry(request).lookup(username)
    if room is not None and _captcha(room, "captcha_pages"):
        return web.Response(text=faults.captcha_page(secrets.token_hex(16)), content_type="text/html")
    state: dict[str, Any] = {"AppContext": {"appContext": {"language": "en"}}, "SEOState": {"canonical": ""}}
    if room is not None and room.state is not RoomState.NOT_FOUND:
        state["LiveRoom"] = {"liveRoomUserInfo": {"user": _owner(room), "liveRoom": _live_room(room)}}
    # "</" must not appear inside a <script> block.
    sigi = json.dumps(state, ensure_ascii=False).replace("</", "<\\/")
    page = (
        "<!DOCTYPE html><html><head><title>"
        f"{html.escape(username)} LIVE | TikTok</title></head><body>"
        f'<script id="SIGI_STATE" type="application/json">{sigi}</script>'
        "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def api_user_room(request: web.Request) -> web.Response:
    username = request.query.get("uniqueId", "")
    room = _registry(request).lookup(username)
    if room is not None and _captcha(room, "captcha_api"):
        return web.json_response(faults.captcha_json(secrets.token_hex(16)))
    extra = {"now": wall_ms()}
    if room is None or room.state is RoomState.NOT_FOUND:
        body = {"data": {}, "extra": extra, "message": "user_not_found", "statusCode": 19881007}
    else:
        body = {
            "data": {"user": _owner(room), "liveRoom": _live_room(room)},
            "extra": extra,
            "message": "",
            "statusCode": 0,
        }
    return web.json_response(body)


def _captcha(room: Room, counter: str) -> bool:
    """Whether this lookup gets the verify page (counted per kind of lookup)."""
    found = _faults(room)
    seen = getattr(found, counter)
    if not faults.applies(room.scenario.captcha, seen):
        return False
    setattr(found, counter, seen + 1)
    return True


async def room_info(request: web.Request) -> web.Response:
    """``/webcast/room/info/``: the room's info; an age-restricted room needs the ``sessionid`` cookie."""
    raw_room_id = request.query.get("room_id", "")
    room = _registry(request).by_room_id(int(raw_room_id)) if raw_room_id.isdigit() else None
    now_ms = wall_ms()
    if room is None:
        return web.json_response(
            {"data": {"message": "room not found"}, "extra": {"now": now_ms}, "status_code": 4003110}
        )
    live = room.state is RoomState.LIVE
    info = {
        "id": room.room_id,
        "id_str": str(room.room_id),
        "status": _STATUS_LIVE if live else _STATUS_OFFLINE,
        "title": f"{room.username} is live (simulated)",
        "owner": {"id": room.owner_id, "id_str": str(room.owner_id), "display_id": room.username},
        "user_count": room.stats.connected,
        "age_restricted": {"restricted": room.scenario.age_restricted},
    }
    body = faults.room_info(info, age_restricted=room.scenario.age_restricted, cookies=request.cookies, now_ms=now_ms)
    return web.json_response(body)


async def check_alive(request: web.Request) -> web.Response:
    registry = _registry(request)
    data = []
    for raw in request.query.get("room_ids", "").split(","):
        if not raw.strip().isdigit():
            continue
        room_id = int(raw)
        room = registry.by_room_id(room_id)
        alive = room is not None and room.state is RoomState.LIVE
        data.append({"alive": alive, "room_id": room_id, "room_id_str": str(room_id)})
    return web.json_response({"data": data, "extra": {"now": wall_ms()}, "status_code": 0})


def _push_server(request: web.Request) -> str:
    config = _registry(request).config
    base = config.public_url or f"{request.scheme}://{request.host}"
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base.rstrip("/") + WS_PATH


def _json_error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"X-Request-Id": secrets.token_hex(8), **{k: str(v) for k, v in extra.items()}}
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


async def sign_fetch(request: web.Request) -> web.Response:
    """The Euler sign server's ``/webcast/fetch``: raw ``ProtoMessageFetchResult`` bytes."""
    registry = _registry(request)
    key = registry.config.sign_api_key
    if key is not None and request.headers.get("X-Api-Key") != key:
        return _json_error(401, "Invalid API key.")
    room: Room | None = None
    raw_room_id = request.query.get("room_id", "")
    if raw_room_id.isdigit():
        room = registry.by_room_id(int(raw_room_id))
    elif request.query.get("unique_id"):
        room = registry.lookup(request.query["unique_id"])
    if room is None:
        return _json_error(404, "Room not found.")
    if not room.take_sign_slot():
        retry_after = room.scenario.retry_after_s
        body = {
            "code": 429,
            "message": f"Sign server rate limit reached. Try again in {retry_after} seconds.",
            "limit_label": "simulated",
        }
        headers = {
            "Retry-After": str(retry_after),
            "RateLimit-Limit": "10",
            # TikTokLive 7.0.1 reads *this* header as the retry-after in seconds (and crashes with a
            # TypeError when it is missing); RateLimit-Reset as a unix timestamp.
            "RateLimit-Remaining": str(retry_after),
            "RateLimit-Reset": str(int(time.time()) + retry_after),
            "X-Request-Id": secrets.token_hex(8),
        }
        if room.scenario.sign_429_retry_after_only:
            headers = {name: value for name, value in headers.items() if not name.startswith("RateLimit-")}
        return web.json_response(body, status=429, headers=headers)
    if room.state is not RoomState.LIVE:
        return _json_error(404, f"Room is not live ({room.state.value}).")
    now_ms = wall_ms()
    token = secrets.token_hex(8)
    cursor = f"t-{now_ms}_r-1_d-1_u-1_h-1"
    internal_ext = f"internal_src:dim|wss_push_room_id:{room.room_id}|wss_push_did:0|fetch_time:{now_ms}|seq:1"
    body_bytes = encode_fetch_result(
        room.history_messages(),
        cursor=cursor,
        fetch_interval=1000,
        now=now_ms,
        internal_ext=internal_ext,
        route_params={"cursor": cursor, "internal_ext": internal_ext, "wrss": token},
        heartbeat_duration=10_000,
        push_server=_push_server(request),
        is_first=True,
    )
    headers = {
        "X-Set-TT-Cookie": f"ttwid=1%7Csim{token}; tt_csrf_token=sim-{token}; tt_chain_token=sim{now_ms}",
        "X-Request-Id": token,
        "X-Agent-Id": "simulator",
        "X-Log-Code": "0",
    }
    return web.Response(body=body_bytes, content_type="application/x-protobuf", headers=headers)


class _AiohttpSocket:
    """Adapts an aiohttp WebSocket to the room's ClientSocket protocol."""

    __slots__ = ("_request", "_ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._request = request

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, frame: bytes) -> None:
        await self._ws.send_bytes(frame)

    def abort(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.abort()

    async def close(self, code: int, message: bytes) -> None:
        await self._ws.close(code=code, message=message)


async def _send_quietly(ws: web.WebSocketResponse, frame: bytes) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(frame)


async def websocket(request: web.Request) -> web.StreamResponse:
    """The push server. The room is chosen by the ``room_id`` query parameter, as on TikTok."""
    raw_room_id = request.query.get("room_id", "")
    room = _registry(request).by_room_id(int(raw_room_id)) if raw_room_id.isdigit() else None
    if room is None:
        raise web.HTTPNotFound(text="unknown room")
    if not room.accepts_sockets():
        # TikTokLive maps a 400 handshake answer to WebcastBlockedError, with this header as reason.
        raise web.HTTPBadRequest(text="room is not live", headers={"Handshake-Msg": "room is not live"})
    counts = _faults(room)
    scenario = room.scenario
    if faults.applies(scenario.handshake_blocked, counts.handshakes_refused):
        counts.handshakes_refused += 1
        status, headers = faults.handshake_refusal(
            scenario.handshake_status, scenario.handshake_msg, secrets.token_hex(16)
        )
        return web.Response(status=status, headers=headers)
    ws = web.WebSocketResponse(
        protocols=("echo-protocol",),
        compress=False,
        max_msg_size=MAX_CLIENT_FRAME,
        autoping=True,
        timeout=60.0,  # closing waits for a client that is still decoding a backlog
    )
    if room.scenario.ping_interval_s is not None:
        ws.headers["Handshake-Options"] = f"ping-interval={room.scenario.ping_interval_s:g}"
    await ws.prepare(request)
    sock = _AiohttpSocket(ws, request)
    replies: set[asyncio.Task[None]] = set()
    room.attach(sock)
    closer: asyncio.Task[None] | None = None
    if scenario.close_code is not None and faults.applies(scenario.closes, counts.sockets_closed):
        counts.sockets_closed += 1
        closer = asyncio.create_task(_close_later(room, ws, scenario.close_code, scenario.close_reason))
    try:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                reply = room.on_client_frame(msg.data)
            elif msg.type is WSMsgType.TEXT:
                reply = room.on_client_frame(msg.data.encode())
            else:
                continue
            if reply is not None and not ws.closed:
                # Never block this reader on a send: a client that is busy decoding a backlog
                # stops reading, and a reader stuck in send stops reading its acks — both
                # sides would wait on each other. The heartbeat echo is best effort.
                replies.add(task := asyncio.create_task(_send_quietly(ws, reply)))
                task.add_done_callback(replies.discard)
    except (ConnectionError, RuntimeError) as exc:
        log.debug("room %s: socket ended with %r", room.username, exc)
    finally:
        room.detach(sock)
        if closer is not None:
            closer.cancel()
    return ws


async def _close_later(room: Room, ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close `ws` with `code` once the room has sent `close_after` more events (a close scenario)."""
    target = room.stats.events_sent + room.scenario.close_after
    if room.scenario.close_after:
        await room.wait_until(lambda: room.stats.events_sent >= target, timeout_s=_CLOSE_WAIT_S)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.close(code=code, message=reason.encode())
