"""The simulator's own JSON API under ``/_sim/``: create rooms, steer them, inspect what was sent.

Tests use it to wait on conditions (``/wait``) instead of sleeping, and to compare what a consumer
stored with what the simulator really put on the wire (``/sent``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from .kinds import EVERY_KIND_METHODS
from .registry import RoomRegistry
from .room import Room, RoomError, RoomState
from .scenario import MIX_KINDS, MIX_PRESETS, RICH_MIX_KINDS, Scenario
from .tiktok_routes import REGISTRY_KEY

PREFIX = "/_sim"
MAX_WAIT_S = 600.0
# /wait?<key>=N waits until the stat is >= N.
WAITABLE_STATS = (
    "events_sent",
    "messages_sent",
    "connections_opened",
    "connected",
    "acks_received",
    "acks_matched",
    "heartbeats_received",
    "enter_room_received",
    "sign_requests",
    "malformed_sent",
    "drops",
    "live_ends",
    "injected_sent",
)
_WAIT_ALIASES = {
    "events": "events_sent",
    "messages": "messages_sent",
    "connections": "connections_opened",
    "injected": "injected_sent",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_control_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/health", health)
    r.add_get(f"{PREFIX}/rooms", list_rooms)
    r.add_put(f"{PREFIX}/rooms/{{username}}", put_room)
    r.add_get(f"{PREFIX}/rooms/{{username}}", get_room)
    r.add_delete(f"{PREFIX}/rooms/{{username}}", delete_room)
    r.add_post(f"{PREFIX}/rooms/{{username}}/live", set_live)
    r.add_post(f"{PREFIX}/rooms/{{username}}/end", end_live)
    r.add_post(f"{PREFIX}/rooms/{{username}}/drop", drop)
    r.add_post(f"{PREFIX}/rooms/{{username}}/resume", resume)
    r.add_get(f"{PREFIX}/rooms/{{username}}/sent", sent)
    r.add_get(f"{PREFIX}/rooms/{{username}}/stats", stats)
    r.add_get(f"{PREFIX}/rooms/{{username}}/wait", wait)
    r.add_post(f"{PREFIX}/rooms/{{username}}/send", send_kinds)
    r.add_get(f"{PREFIX}/kinds", list_kinds)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _http_error(error_class: type[web.HTTPError], message: str) -> web.HTTPError:
    """A raisable JSON error (aiohttp deprecates ``body=`` on its HTTP exceptions)."""
    return error_class(text=orjson.dumps({"error": message}).decode(), content_type="application/json")


def _registry(request: web.Request) -> RoomRegistry:
    return request.app[REGISTRY_KEY]


def _room(request: web.Request) -> Room:
    room = _registry(request).get(request.match_info["username"])
    if room is None:
        raise _http_error(web.HTTPNotFound, "no such room")
    return room


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _http_error(web.HTTPBadRequest, f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _http_error(web.HTTPBadRequest, "expected a JSON object")
    return data


async def health(request: web.Request) -> web.Response:
    return _json({"ok": True, "rooms": len(_registry(request))})


async def list_rooms(request: web.Request) -> web.Response:
    return _json({"rooms": [room.summary_json() for room in _registry(request)]})


async def put_room(request: web.Request) -> web.Response:
    username = request.match_info["username"].lstrip("@")
    try:
        scenario = Scenario.from_dict(await _body(request))
        existed = _registry(request).get(username) is not None
        room = await _registry(request).put(username, scenario)
    except ValueError as exc:
        return _error(400, str(exc))
    return _json(room.summary_json(), 200 if existed else 201)


async def get_room(request: web.Request) -> web.Response:
    return _json(_room(request).summary_json())


async def delete_room(request: web.Request) -> web.Response:
    if not await _registry(request).delete(request.match_info["username"]):
        return _error(404, "no such room")
    return _json({"deleted": request.match_info["username"]})


async def set_live(request: web.Request) -> web.Response:
    room = _room(request)
    live = (await _body(request)).get("live", True)
    if not isinstance(live, bool):
        return _error(400, '"live" must be true or false')
    try:
        await room.set_live(live)
    except RoomError as exc:
        return _error(409, str(exc))
    return _json(room.stats_json())


async def end_live(request: web.Request) -> web.Response:
    room = _room(request)
    try:
        delivered = await room.end_live()
    except RoomError as exc:
        return _error(409, str(exc))
    return _json({"delivered": delivered, "state": room.state.value})


async def drop(request: web.Request) -> web.Response:
    room = _room(request)
    return _json({"dropped": room.drop()})


async def resume(request: web.Request) -> web.Response:
    room = _room(request)
    body = await _body(request)
    more = body.get("more")
    if more is not None and (not isinstance(more, int) or isinstance(more, bool) or more < 0):
        return _error(400, '"more" must be a non-negative integer')
    room.resume(more=more, unlimited=bool(body.get("unlimited", False)))
    return _json(room.stats_json())


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise _http_error(web.HTTPBadRequest, f"{name} must be an integer") from exc


async def sent(request: web.Request) -> web.Response:
    room = _room(request)
    since = _int_query(request, "since", 0) or 0
    limit = _int_query(request, "limit", None)
    return _json(room.sent_json(since=since, limit=limit))


async def stats(request: web.Request) -> web.Response:
    return _json(_room(request).stats_json())


async def wait(request: web.Request) -> web.Response:
    """Block until every given stat reaches its threshold (and ``state`` matches, if given); 408 on
    timeout. Example: ``/wait?events=100&connected=1&timeout=10``."""
    room = _room(request)
    try:
        timeout = min(float(request.query.get("timeout", "30")), MAX_WAIT_S)
    except ValueError:
        return _error(400, "timeout must be a number")
    targets: dict[str, int] = {}
    for key, raw in request.query.items():
        if key in ("timeout", "state"):
            continue
        name = _WAIT_ALIASES.get(key, key)
        if name not in WAITABLE_STATS:
            return _error(400, f"cannot wait on {key!r}; use one of {sorted(WAITABLE_STATS)} or state")
        try:
            targets[name] = int(raw)
        except ValueError:
            return _error(400, f"{key} must be an integer")
    wanted_state = request.query.get("state")
    if wanted_state is not None and wanted_state not in {s.value for s in RoomState}:
        return _error(400, f"unknown state {wanted_state!r}")

    def reached() -> bool:
        values = vars(room.stats)
        if any(values[name] < target for name, target in targets.items()):
            return False
        return wanted_state is None or room.state.value == wanted_state

    ok = await room.wait_until(reached, timeout)
    return _json({"ok": ok, "stats": room.stats_json()}, 200 if ok else 408)


async def list_kinds(request: web.Request) -> web.Response:
    """What the simulator can send: the every-kind methods, the mix kinds and the mix presets."""
    return _json(
        {
            "every_kind_methods": list(EVERY_KIND_METHODS),
            "mix_kinds": list(MIX_KINDS + RICH_MIX_KINDS),
            "mix_presets": MIX_PRESETS,
        }
    )


async def send_kinds(request: web.Request) -> web.Response:
    """Queue the every-kind set: ``{"methods": "all"}`` (default) or a list of methods, and
    ``"end": true`` to end the live right after them. Answers the queued messages in send order
    (``method``, ``msg_id``, ``variant``); wait for them with ``/wait?injected=N``."""
    room = _room(request)
    body = await _body(request)
    methods = body.get("methods", "all")
    end = body.get("end", False)
    if not isinstance(end, bool):
        return _error(400, '"end" must be true or false')
    selected: list[str] | None
    if methods == "all":
        selected = None
    elif isinstance(methods, list) and methods and all(isinstance(m, str) for m in methods):
        unknown = sorted(set(methods) - set(EVERY_KIND_METHODS))
        if unknown:
            return _error(400, f"unknown methods {unknown}; see GET {PREFIX}/kinds")
        selected = methods
    else:
        return _error(400, '"methods" must be "all" or a non-empty list of method names')
    try:
        events = room.send_kinds(selected, end=end)
    except RoomError as exc:
        return _error(409, str(exc))
    queued = [{"method": e.method, "msg_id": e.msg_id, "kind": e.kind, "variant": e.variant} for e in events]
    return _json({"queued": queued, "count": len(queued), "end": end})
