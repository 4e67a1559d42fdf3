"""One simulated TikTok LIVE room: state machine, connected sockets, the send loop and its logs.

Generation model (what tests comparing "sent" with "stored" rely on):

* The timeline advances only while the room is live *and* at least one socket is connected; events
  are broadcast to every connected socket (same bytes, one encoding).
* An event counts as sent once it was written to at least one socket. If every socket vanished
  before a batch went out, the batch is carried over to the next connection.
* The sign-fetch response replays the last ``history`` sent messages, byte-identical, so a client
  reconnecting sees duplicates it must deduplicate by msg_id.
* ``total`` / ``live_end_after`` / ``drop_after`` / ``stall_after`` are exact: a batch never crosses
  one of those boundaries.

The room knows nothing about HTTP or aiohttp; sockets are anything implementing :class:`ClientSocket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .faults import build_malformed
from .fixtures import CapturedPayload, fixture_events
from .messages import RoomEncoder, encode_fetch_result, encode_msg_frame, encode_push_frame
from .scenario import (
    MALFORMED_NAMESPACE,
    Scenario,
    SimEvent,
    SimUser,
    derive_msg_id,
    derive_room_id,
    seed_for_username,
)
from .timeline import EventGenerator
from .wire import WireError, decode_fields, to_signed64

log = logging.getLogger(__name__)

# After a scheduled drop we wait this long for the client to ack the last frame, so the events we
# report as sent were really received before the connection is cut.
DROP_ACK_WAIT_S = 1.0
_ACK_MEMORY = 4096  # outstanding need_ack log ids remembered
LIVE_END_CLOSE_GRACE_S = 60.0  # a client decoding a backlog reads the live end late; it hangs up itself


class RoomState(enum.StrEnum):
    NOT_FOUND = "not_found"
    OFFLINE = "offline"
    LIVE = "live"
    ENDED = "ended"


class RoomError(RuntimeError):
    """An operation that the room's current state does not allow (mapped to HTTP 409)."""


class ClientSocket(Protocol):
    """What the room needs from a connected WebSocket."""

    @property
    def closed(self) -> bool: ...

    async def send(self, frame: bytes) -> None: ...

    def abort(self) -> None:
        """Drop the connection without a close frame."""

    async def close(self, code: int, message: bytes) -> None: ...


@dataclass
class RoomStats:
    connections_opened: int = 0
    connected: int = 0
    enter_room_received: int = 0
    heartbeats_received: int = 0
    acks_received: int = 0
    acks_matched: int = 0  # acks whose log_id is a frame we sent with need_ack
    other_client_frames: int = 0
    sign_requests: int = 0
    sign_429_sent: int = 0
    history_replayed: int = 0
    events_sent: int = 0  # timeline events (generated + fixtures)
    messages_sent: int = 0  # events + control messages
    frames_sent: int = 0
    bytes_sent: int = 0
    malformed_sent: int = 0
    drops: int = 0
    live_ends: int = 0
    last_send_ms: int | None = None
    injected_sent: int = 0  # messages queued by POST /send (not timeline events) that went out


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Room:
    """A room keyed by username. Create, then :meth:`start` inside a running event loop."""

    def __init__(
        self,
        username: str,
        scenario: Scenario,
        *,
        captured: tuple[CapturedPayload, ...] = (),
        send_timeout_s: float = 10.0,
    ) -> None:
        self.username = username
        self.scenario = scenario
        self.seed = scenario.seed if scenario.seed is not None else seed_for_username(username)
        self.room_id = scenario.room_id or derive_room_id(username, self.seed)
        self.owner_id = 6_900_000_000_000_000_000 + random.Random(f"owner:{username}").randrange(10**17)
        self.state = (
            RoomState.NOT_FOUND if scenario.not_found else RoomState.OFFLINE if scenario.offline else RoomState.LIVE
        )
        prelude = fixture_events(captured) if scenario.fixtures else []
        self.host = SimUser(self.owner_id, username, username.replace("_", " ").title(), f"MS4wLjABAAAA{username}")
        self.generator = EventGenerator(
            scenario, self.seed, prelude=prelude, host=self.host, room_id=self.room_id, clock_ms=wall_ms
        )
        self.encoder = RoomEncoder(self.room_id)
        self.stats = RoomStats()
        self.started_ms = wall_ms()
        self._send_timeout_s = send_timeout_s
        self._sockets: set[ClientSocket] = set()
        self._history: deque[bytes] = deque(maxlen=scenario.history)
        self._sent: deque[tuple[SimEvent, int]] = deque(maxlen=scenario.sent_log_limit)
        self._sent_forgotten = 0
        self._malformed_log: list[dict[str, Any]] = []
        self._carry: list[SimEvent] = []
        self._injected: list[SimEvent] = []  # POST /send queue: goes out before the timeline
        self._end_after_injected = False
        self._limit_total = scenario.total
        self._end_pending = scenario.live_end_after is not None
        self._next_drop = scenario.drop_after
        self._stall_pending = scenario.stall_after is not None
        self._stalled_until: float | None = None  # loop time; math.inf = until resume
        self._sign_429_left = scenario.sign_429
        self._malformed_rng = random.Random(f"malformed:{self.seed}")
        self._malformed_once = list(scenario.malformed) if scenario.malformed_ratio == 0 else []
        self._frame_seq = 0
        self._awaiting_ack: deque[int] = deque(maxlen=_ACK_MEMORY)
        self._awaiting_ack_set: set[int] = set()
        self._last_ack_log_id: int | None = None
        self._last_ack_done = False
        self._wake = asyncio.Event()
        self._waiters: set[asyncio.Future[None]] = set()
        self._rate_t0 = 0.0
        self._rate_count = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn(self._pump())
        if self.state is RoomState.OFFLINE and self.scenario.live_after_s is not None:
            self._spawn(self._go_live_later(self.scenario.live_after_s))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop sending and abort every socket (a replaced/deleted room vanishes abruptly)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in list(self._sockets):
            sock.abort()
        self._sockets.clear()
        self._notify()

    async def _go_live_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self.state is RoomState.OFFLINE:
            await self.set_live(True)

    # -- sockets -----------------------------------------------------------------------------------

    def attach(self, sock: ClientSocket) -> None:
        self._sockets.add(sock)
        self.stats.connections_opened += 1
        self.stats.connected = len(self._sockets)
        self._notify()

    def detach(self, sock: ClientSocket) -> None:
        self._sockets.discard(sock)
        self.stats.connected = len(self._sockets)
        self._notify()

    def accepts_sockets(self) -> bool:
        return self.state is RoomState.LIVE

    def on_client_frame(self, data: bytes) -> bytes | None:
        """Account for a frame a client sent; returns a frame to answer with (``hb`` echo) or None."""
        try:
            fields = decode_fields(data)
        except WireError:
            self.stats.other_client_frames += 1
            self._notify()
            return None
        payload_type = fields.get(7)
        if payload_type == b"hb":
            self.stats.heartbeats_received += 1
            payload = fields.get(8)
            reply = encode_push_frame(payload_type="hb", payload=payload if isinstance(payload, bytes) else b"")
        elif payload_type == b"ack":
            self.stats.acks_received += 1
            log_id = fields.get(2)
            if isinstance(log_id, int) and to_signed64(log_id) in self._awaiting_ack_set:
                self.stats.acks_matched += 1
                if to_signed64(log_id) == self._last_ack_log_id:
                    self._last_ack_done = True
            reply = None
        elif payload_type == b"im_enter_room":
            self.stats.enter_room_received += 1
            reply = None
        else:
            self.stats.other_client_frames += 1
            reply = None
        self._notify()
        return reply

    # -- sign fetch --------------------------------------------------------------------------------

    def take_sign_slot(self) -> bool:
        """Count a sign request; False if it must be answered 429."""
        self.stats.sign_requests += 1
        if self._sign_429_left > 0:
            self._sign_429_left -= 1
            self.stats.sign_429_sent += 1
            self._notify()
            return False
        self._notify()
        return True

    def history_messages(self) -> list[bytes]:
        """The last ``history`` sent messages (encoded ``BaseProtoMessage``), oldest first."""
        messages = list(self._history)
        self.stats.history_replayed += len(messages)
        return messages

    # -- control -----------------------------------------------------------------------------------

    async def set_live(self, live: bool) -> None:
        """Go live (from offline/ended) or offline (a live room first sends live end to its sockets)."""
        if self.state is RoomState.NOT_FOUND:
            raise RoomError("user does not exist; recreate the room without not_found")
        if live:
            if self.state is not RoomState.LIVE:
                self.state = RoomState.LIVE
                self._rate_count = 0
        elif self.state is RoomState.LIVE:
            await self.end_live(final_state=RoomState.OFFLINE)
        else:
            self.state = RoomState.OFFLINE
        self._notify()

    async def end_live(self, final_state: RoomState = RoomState.ENDED) -> bool:
        """Send live end (ControlMessage action 3) to every socket, close them, stop the timeline.
        Returns whether anyone received it."""
        if self.state is not RoomState.LIVE:
            raise RoomError(f"room is {self.state.value}, not live")
        self._end_pending = False
        self.state = final_state
        delivered = False
        if self._sockets:
            event = self.generator.control_event(3)
            delivered = await self._send_events([event], count_as_events=False)
            self.stats.live_ends += 1
        for sock in list(self._sockets):
            self._spawn(self._close_after_grace(sock))
        self._notify()
        return delivered

    def drop(self) -> int:
        """Abort every socket now (no close frame). Returns how many were dropped."""
        sockets = list(self._sockets)
        for sock in sockets:
            sock.abort()
            self._sockets.discard(sock)
        if sockets:
            self.stats.drops += 1
        self.stats.connected = len(self._sockets)
        self._notify()
        return len(sockets)

    def resume(self, more: int | None = None, unlimited: bool = False) -> None:
        """Un-stall, and optionally allow ``more`` events beyond ``total`` (or lift the limit)."""
        self._stalled_until = None
        if unlimited:
            self._limit_total = None
        elif more is not None:
            base = self.stats.events_sent
            if self._limit_total is not None:
                base = max(base, self._limit_total)
            self._limit_total = base + more
        self._rate_count = 0
        self._notify()

    def send_kinds(self, methods: list[str] | None = None, *, end: bool = False) -> list[SimEvent]:
        """Queue the every-kind set (all of it, or the messages of the given methods) to go out next,
        ahead of the timeline and regardless of ``total``/stalls; with ``end``, the live ends right
        after them (ControlMessage STREAM_ENDED, the library then disconnects). Returns the queued
        messages (method, msg_id, variant) in send order; they also appear in ``GET /sent``."""
        if self.state is not RoomState.LIVE:
            raise RoomError(f"room is {self.state.value}, not live")
        events = self.generator.injected_events(methods)
        self._injected.extend(events)
        self._end_after_injected = self._end_after_injected or end
        self._notify()
        return events

    # -- inspection --------------------------------------------------------------------------------

    def sent_json(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        first_index = self._sent_forgotten
        start = max(0, since - first_index)
        entries = list(self._sent)[start : None if limit is None else start + limit]
        return {
            "username": self.username,
            "room_id": self.room_id,
            "first_index": first_index + start,
            "forgotten": self._sent_forgotten,
            "count": len(entries),
            "messages": [event.to_json(create_time) for event, create_time in entries],
            "malformed": list(self._malformed_log),
        }

    def stats_json(self) -> dict[str, Any]:
        out = asdict(self.stats)
        out.update(
            username=self.username,
            room_id=self.room_id,
            state=self.state.value,
            open_streaks=self.generator.open_streaks,
            stalled=self._is_stalled(),
            limit_total=self._limit_total,
        )
        return out

    def summary_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "room_id": self.room_id,
            "seed": self.seed,
            "state": self.state.value,
            "scenario": self.scenario.to_dict(),
            "stats": self.stats_json(),
        }

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (without polling) until ``predicate()`` holds; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._waiters.add(future)
                    try:
                        await future
                    finally:
                        self._waiters.discard(future)
        except TimeoutError:
            return predicate()
        return True

    def _notify(self) -> None:
        self._wake.set()
        for future in self._waiters:
            if not future.done():
                future.set_result(None)

    # -- the send loop -----------------------------------------------------------------------------

    def _is_stalled(self) -> bool:
        return self._stalled_until is not None and asyncio.get_running_loop().time() < self._stalled_until

    def _blocked(self) -> tuple[bool, float | None]:
        """(blocked?, how long until that could change by itself)."""
        if self.state is not RoomState.LIVE or not self._sockets:
            return True, None
        if self._injected or self._end_after_injected:
            return False, None
        if self._stalled_until is not None:
            remaining = self._stalled_until - asyncio.get_running_loop().time()
            if remaining > 0:
                return True, None if math.isinf(remaining) else remaining
            self._stalled_until = None
        if self._limit_total is not None and self.stats.events_sent >= self._limit_total:
            return True, None
        return False, None

    async def _sleep_or_wake(self, delay_s: float | None) -> None:
        """Sleep up to ``delay_s`` (None = indefinitely), waking early on any room change."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._wake.wait()

    def _room_to_boundary(self) -> float:
        sent = self.stats.events_sent
        limits: list[int] = []
        if self._limit_total is not None:
            limits.append(self._limit_total - sent)
        if self._end_pending and self.scenario.live_end_after is not None:
            limits.append(self.scenario.live_end_after - sent)
        if self._next_drop is not None:
            limits.append(self._next_drop - sent)
        if self._stall_pending and self.scenario.stall_after is not None:
            limits.append(self.scenario.stall_after - sent)
        return min(limits) if limits else math.inf

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        rate = self.scenario.rate
        batch = self.scenario.batch
        while True:
            blocked, wait_s = self._blocked()
            if blocked:
                await self._sleep_or_wake(wait_s)
                self._rate_count = 0
                continue
            if self._injected or self._end_after_injected:
                await self._send_injected(batch)
                continue
            if self._rate_count == 0:
                self._rate_t0 = loop.time()
            if rate > 0:
                elapsed = loop.time() - self._rate_t0
                due = int(elapsed * rate) + 1 - self._rate_count
                if due <= 0:
                    await self._sleep_or_wake((self._rate_count - elapsed * rate) / rate)
                    continue
            else:
                due = batch
            room = self._room_to_boundary()
            count = int(min(due, batch, room))
            if count > 0:
                events = self._carry[:count]
                del self._carry[:count]
                if len(events) < count:
                    events.extend(self.generator.take(count - len(events)))
                if not await self._send_events(events, count_as_events=True):
                    self._carry[:0] = events
                    continue
                self._rate_count += count
                await self._maybe_inject_malformed()
            await self._after_batch()
            if rate <= 0:
                await asyncio.sleep(0)  # let sockets' readers (and everything else) run

    async def _send_injected(self, batch: int) -> None:
        events = self._injected[:batch]
        if events:
            if not await self._send_events(events, count_as_events=False):
                return  # every socket vanished: keep them for the next connection
            del self._injected[: len(events)]
            self.stats.injected_sent += len(events)
            self._notify()
            await asyncio.sleep(0)
        elif self._end_after_injected:
            self._end_after_injected = False
            if self.state is RoomState.LIVE:
                await self.end_live()

    async def _after_batch(self) -> None:
        sent = self.stats.events_sent
        live_end_after = self.scenario.live_end_after
        if self._end_pending and live_end_after is not None and sent >= live_end_after:
            if self.state is RoomState.LIVE:
                await self.end_live()
            return
        if self._next_drop is not None and sent >= self._next_drop:
            drop_after = self.scenario.drop_after
            self._next_drop = sent + drop_after if self.scenario.drop_repeat and drop_after else None
            await self.wait_until(self._last_frame_acked, DROP_ACK_WAIT_S)
            self.drop()
        if self._stall_pending and self.scenario.stall_after is not None and sent >= self.scenario.stall_after:
            self._stall_pending = False
            stall_s = self.scenario.stall_s
            self._stalled_until = asyncio.get_running_loop().time() + stall_s if stall_s > 0 else math.inf

    def _last_frame_acked(self) -> bool:
        """True once the latest need_ack frame was acknowledged (or nobody is left to ack it)."""
        return not self._sockets or self._last_ack_log_id is None or self._last_ack_done

    def _next_log_id(self) -> int:
        return derive_msg_id(self.seed ^ 0x10C1D, self._frame_seq)

    async def _send_events(self, events: list[SimEvent], *, count_as_events: bool) -> bool:
        if count_as_events and self.state is not RoomState.LIVE:
            return False  # ended while this batch was being prepared: keep it for later
        now_ms = wall_ms()
        encoded = self.encoder.encode_batch(events, now_ms)
        self._frame_seq += 1
        seq = self._frame_seq
        ack_every = self.scenario.ack_every
        need_ack = bool(ack_every) and seq % ack_every == 0
        cursor = f"t-{now_ms}_r-{seq}_d-1_u-1_h-1"
        internal_ext = (
            f"internal_src:dim|wss_push_room_id:{self.room_id}|wss_push_did:0|fetch_time:{now_ms}"
            f"|seq:{seq}|wss_info:0-{now_ms}-0-0|wrds_kvs:sim-{self.seed}-{seq}"
        )
        fetch = encode_fetch_result(encoded, cursor=cursor, now=now_ms, internal_ext=internal_ext, need_ack=need_ack)
        log_id = self._next_log_id()
        frame = encode_msg_frame(fetch, seq_id=seq, log_id=log_id, cursor=cursor)
        if need_ack:
            self._remember_ack(log_id)
        if not await self._broadcast(frame):
            return False
        stats = self.stats
        stats.frames_sent += 1
        stats.bytes_sent += len(frame)
        stats.messages_sent += len(events)
        stats.last_send_ms = now_ms
        if count_as_events:
            stats.events_sent += len(events)
            self._history.extend(encoded)
        if len(self._sent) + len(events) > (self._sent.maxlen or 0):
            self._sent_forgotten += len(self._sent) + len(events) - (self._sent.maxlen or 0)
        self._sent.extend((event, now_ms) for event in events)
        self._notify()
        return True

    def _remember_ack(self, log_id: int) -> None:
        if len(self._awaiting_ack) == self._awaiting_ack.maxlen:
            self._awaiting_ack_set.discard(self._awaiting_ack[0])
        self._awaiting_ack.append(log_id)
        self._awaiting_ack_set.add(log_id)
        self._last_ack_log_id = log_id
        self._last_ack_done = False

    async def _broadcast(self, frame: bytes) -> bool:
        """Send to every socket; a socket that fails or blocks too long is aborted. True if any got it."""
        delivered = 0
        for sock in list(self._sockets):
            if sock.closed:
                self.detach(sock)
                continue
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await sock.send(frame)
                delivered += 1
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                log.debug("room %s: dropping socket after send failure: %r", self.username, exc)
                sock.abort()
                self.detach(sock)
        return delivered > 0

    async def _maybe_inject_malformed(self) -> None:
        scenario = self.scenario
        kind: str | None = None
        if self._malformed_once:
            kind = self._malformed_once.pop(0)
        elif scenario.malformed_ratio > 0 and self._malformed_rng.random() < scenario.malformed_ratio:
            kind = scenario.malformed[len(self._malformed_log) % len(scenario.malformed)]
        if kind is None or not self._sockets:
            return
        now_ms = wall_ms()
        self._frame_seq += 1
        msg_id = derive_msg_id(self.seed, MALFORMED_NAMESPACE + len(self._malformed_log))
        bad = build_malformed(
            kind,
            msg_id=msg_id,
            room_id=self.room_id,
            seq_id=self._frame_seq,
            log_id=self._next_log_id(),
            now_ms=now_ms,
        )
        if await self._broadcast(bad.frame):
            self.stats.malformed_sent += 1
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(bad.frame)
            self._malformed_log.append(
                {
                    "kind": kind,
                    "msg_id": bad.msg_id,
                    "method": bad.method,
                    "bytes": len(bad.frame),
                    "after_event": self.stats.events_sent,
                    "time": now_ms,
                }
            )
            self._notify()

    async def _close_after_grace(self, sock: ClientSocket) -> None:
        """After live end, give the client time to read it and hang up itself (TikTokLive does);
        closing at once would make TikTokLive skip frames still queued, LiveEnd included."""
        await self.wait_until(lambda: sock.closed or sock not in self._sockets, LIVE_END_CLOSE_GRACE_S)
        with contextlib.suppress(Exception):
            await sock.close(1000, b"live ended")
        self.detach(sock)
