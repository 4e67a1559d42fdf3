"""Routes TikTokLive events into the publisher: dedupe, fold gift streaks, filter, count.

One TikTok message, one published event. The library emits, for one message, the proto
event of its method, sometimes a derived event too (FollowEvent, LiveEndEvent,
SuperFanEvent... decoded again from the same bytes) and a WebsocketResponseEvent. We
listen to the proto event classes only (one listener per method TikTokLive maps) and
classify messages ourselves (`domain.catalogue`), so a derived event can never publish a
message twice.

Nothing is dropped silently: the WebsocketResponseEvent that precedes every message tells
which message comes next. A method the library does not map is published as
`tiktok.unknown` from that message; so is a message of a mapped method that the library
fails to decode (it logs and moves on): its raw payload is kept and it is counted as
schema drift. Every message not published is counted by method and reason.

Handlers are synchronous on purpose: pyee calls them inline from the library's receive
loop (an async handler would cost a task per message). A synchronous handler that raises
kills the library's connection task, so every handler is wrapped: an exception is logged
and counted, and the message is published raw (`tiktok.unknown`, like a message the library
could not decode) unless the handler had already published it — the socket keeps going.

Drop counters carry the TikTok method; methods TikTok invents that the library does not map
are counted under one label (`UNMAPPED`), so the label set stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from TikTokLive import TikTokLiveClient
from TikTokLive.events import proto_events as pe
from TikTokLive.events.custom_events import ConnectEvent, WebsocketResponseEvent

from tiktok_service.connector import metrics, normalise, proto_classes
from tiktok_service.domain import catalogue
from tiktok_service.domain.connector_status import ConnectorStatus
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.events import Envelope, EventType, User
from tiktok_service.domain.streaks import GiftStreaks

log = logging.getLogger(__name__)

Sink = Callable[[Envelope], object]
#: Method label of drops that concern no single TikTok message (streak ends, connector events).
NO_METHOD = ""
#: Method label of messages whose method the library does not map (TikTok may invent any name).
UNMAPPED = "unmapped"


class EventRouter:
    """Per-connector state that outlives reconnects: seen ids, open streaks, counters."""

    def __init__(
        self,
        *,
        livestream_id: str,
        sink: Sink,
        dedupe: RecentIds,
        status: ConnectorStatus,
        event_types: Collection[EventType] = (),
        gift_progress: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = normalise.Context(livestream_id=livestream_id, room_id=0)
        self._sink = sink
        self._dedupe = dedupe
        self._status = status
        self._types = frozenset(event_types)
        self._gift_progress = gift_progress
        self._clock = clock
        self._streaks = GiftStreaks()
        self._gift_meta: dict[tuple[int, int, int], tuple[dict[str, Any], User | None]] = {}
        self._connection_seq = 0
        # The fetch result being read and the method whose proto event is due next.
        self._response: Any = None
        self._response_index = 0
        self._expected: Any = None
        self._published = 0  # envelopes handed on (or filtered) so far: tells a handler's partial work
        self.live_ended = False
        self.last_activity = clock()

    # -- wiring -------------------------------------------------------------------------
    def handlers(self) -> dict[str, tuple[type[Any], Callable[[Any], None]]]:
        """method -> (the library's event class, our handler), for every method it maps."""
        bulk: dict[str, Callable[[Any], None]] = {
            "WebcastChatMessage": self._on_comment,
            "WebcastGiftMessage": self._on_gift,
            "WebcastLikeMessage": self._on_like,
            "WebcastMemberMessage": self._on_join,
            "WebcastRoomUserSeqMessage": self._on_viewers,
            "WebcastSocialMessage": self._on_social,
            "WebcastControlMessage": self._on_control,
        }
        table: dict[str, tuple[type[Any], Callable[[Any], None]]] = {}
        for method, event_class in pe.EVENT_MAPPINGS.items():
            handler = bulk.get(method) or self._rare_handler(method)
            table[method] = (event_class, self._guarded(handler, method))
        return table

    def attach(self, client: TikTokLiveClient) -> None:
        proto_classes.complete()  # before the first message is parsed (see the module)
        for event_class, handler in self.handlers().values():
            client.add_listener(event_class, handler)
        client.add_listener(WebsocketResponseEvent, self._guarded(self.on_response, NO_METHOD, expects=False))
        client.add_listener(ConnectEvent, self._guarded(self._on_connect, NO_METHOD, expects=False))

    def _guarded(self, handler: Callable[[Any], None], method: str, *, expects: bool = True) -> Callable[[Any], None]:
        def guarded(event: Any) -> None:
            message = None
            if expects:
                message, self._expected = self._expected, None
            published = self._published
            try:
                self.last_activity = self._clock()
                handler(event)
            except Exception:
                metrics.HANDLER_ERRORS.inc()
                log.exception("failed to normalise %s", type(event).__name__)
                if message is None or self._published != published:
                    metrics.dropped.inc(method, "handler_error")  # nothing to fall back on, or already out
                    return
                # Our normaliser failed on a message TikTokLive decoded: keep it, raw.
                metrics.SCHEMA_DRIFT.labels(type=EventType.UNKNOWN.value).inc()
                self._publish_raw(message, method)

        return guarded

    # -- emission -----------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _fresh(self, event: Any, kind: EventType, method: str) -> bool:
        """Count the message; False when it is a replayed duplicate."""
        metrics.received.inc(kind.value)
        received = self._status.received
        received[kind.value] = received.get(kind.value, 0) + 1
        common = getattr(event, "common", None)
        msg_id = getattr(common, "msg_id", 0) if common is not None else 0
        if isinstance(msg_id, int) and msg_id > 0 and not self._dedupe.add(str(msg_id)):
            metrics.dropped.inc(method, "duplicate")
            return False
        return True

    def emit(self, envelope: Envelope, *, drift: bool = False, method: str = NO_METHOD) -> None:
        if drift:
            metrics.SCHEMA_DRIFT.labels(type=envelope.type.value).inc()
            if not self._dedupe.add(envelope.id):  # content-hash ids dedupe here
                metrics.dropped.inc(method, "duplicate")
                return
        self._published += 1
        if self._types and envelope.type not in self._types:
            metrics.dropped.inc(method, "filtered")
            return
        self._status.last_event_at_ms = envelope.time_ms
        if self._sink(envelope) is False:  # the publisher's buffer is full: it counted the reason
            metrics.MESSAGES_DROPPED.labels(method=method, reason="buffer_full").inc()

    def _emit_normalised(self, result: normalise.Normalised, method: str) -> None:
        self.emit(result.envelope, drift=result.drift, method=method)

    # -- the message stream -------------------------------------------------------------
    def on_response(self, event: WebsocketResponseEvent) -> None:
        """Sent by the library before each message of a fetch result, in order."""
        response = event.raw
        if response is not self._response:
            self._response = response
            self._response_index = 0
        self.check_expected()
        messages = response.messages
        index = self._response_index
        if index >= len(messages):
            return
        self._response_index = index + 1
        message = messages[index]
        if message.method in pe.EVENT_MAPPINGS:
            self._expected = message
        else:
            self._on_unknown(message)

    def check_expected(self) -> None:
        """Publish the last message raw (`tiktok.unknown`) if the library failed to decode it."""
        message, self._expected = self._expected, None
        if message is not None:
            metrics.SCHEMA_DRIFT.labels(type=EventType.UNKNOWN.value).inc()
            log.warning("TikTokLive could not decode a %s message; published raw", message.method)
            self._on_unknown(message)

    # -- handlers -----------------------------------------------------------------------
    def _on_comment(self, event: Any) -> None:
        if self._fresh(event, EventType.COMMENT, "WebcastChatMessage"):
            self._emit_normalised(normalise.comment(event, self.ctx, self._now_ms()), "WebcastChatMessage")

    def _on_like(self, event: Any) -> None:
        if self._fresh(event, EventType.LIKE, "WebcastLikeMessage"):
            self._emit_normalised(normalise.like(event, self.ctx, self._now_ms()), "WebcastLikeMessage")

    def _on_join(self, event: Any) -> None:
        if self._fresh(event, EventType.JOIN, "WebcastMemberMessage"):
            self._emit_normalised(normalise.join(event, self.ctx, self._now_ms()), "WebcastMemberMessage")

    def _on_social(self, event: Any) -> None:
        kind = catalogue.classify_social(normalise.display_type(event))
        if self._fresh(event, kind, "WebcastSocialMessage"):
            self._emit_normalised(normalise.social(event, self.ctx, self._now_ms(), kind), "WebcastSocialMessage")

    def _on_viewers(self, event: Any) -> None:
        if self._fresh(event, EventType.VIEWER, "WebcastRoomUserSeqMessage"):
            result = normalise.viewers(event, self.ctx, self._now_ms())
            self._status.viewer_count = int(result.envelope.data["viewer_count"])
            self._emit_normalised(result, "WebcastRoomUserSeqMessage")

    def _on_control(self, event: Any) -> None:
        result = normalise.control(event, self.ctx, self._now_ms())
        kind = result.envelope.type
        if kind is EventType.LIVE_END:
            self.live_ended = True
        if self._fresh(event, kind, "WebcastControlMessage"):
            if kind is EventType.LIVE_END:
                self.flush_streaks()
            self._emit_normalised(result, "WebcastControlMessage")

    def _rare_handler(self, method: str) -> Callable[[Any], None]:
        def handle(event: Any) -> None:
            kind = normalise.classify(method, event)
            if kind is EventType.UNKNOWN:  # mapped by a newer library, not in our catalogue yet
                metrics.SCHEMA_DRIFT.labels(type=kind.value).inc()
                common = getattr(event, "common", None)
                msg_id = int(getattr(common, "msg_id", 0) or 0) if common is not None else 0
                if self._fresh(event, kind, method):
                    self.emit(normalise.unknown(method, msg_id, bytes(event), self.ctx, self._now_ms()), method=method)
                return
            if self._fresh(event, kind, method):
                self._emit_normalised(normalise.decoded(event, kind, self.ctx, self._now_ms()), method)

        return handle

    def _on_gift(self, event: Any) -> None:
        method = "WebcastGiftMessage"
        if not self._fresh(event, EventType.GIFT, method):
            return
        step, description, user, drift = normalise.gift_step(event, self._now_ms())
        if drift:
            metrics.SCHEMA_DRIFT.labels(type=EventType.GIFT.value).inc()
        if step.streakable:
            self._gift_meta[step.key] = (description, user)
            if self._gift_progress and not step.repeat_end:
                self.emit(normalise.gift_progress(step, description, user, self.ctx), method=method)
        closed = self._streaks.observe(step, self._clock())
        if closed is not None:
            self._gift_meta.pop(step.key, None)
            self.emit(normalise.gift_event(closed, description, user, self.ctx), method=method)

    def _on_unknown(self, message: Any) -> None:
        method = str(message.method)
        label = method if method in pe.EVENT_MAPPINGS else UNMAPPED
        metrics.received.inc(EventType.UNKNOWN.value)
        msg_id = int(message.msg_id or 0)
        if msg_id > 0 and not self._dedupe.add(str(msg_id)):
            metrics.dropped.inc(label, "duplicate")
            return
        envelope = normalise.unknown(method, msg_id, bytes(message.payload), self.ctx, self._now_ms())
        # Without a msg_id the id is a content hash: dedupe on it (a replay has the same bytes).
        self.emit(envelope, drift=msg_id <= 0, method=label)

    def _publish_raw(self, message: Any, method: str) -> None:
        """A decoded message our handler failed on, published raw (its msg_id is already seen)."""
        msg_id = int(message.msg_id or 0)
        self.emit(normalise.unknown(method, msg_id, bytes(message.payload), self.ctx, self._now_ms()), method=method)

    def _on_connect(self, event: ConnectEvent) -> None:
        self.ctx.room_id = int(event.room_id)
        self._connection_seq += 1
        envelope = normalise.connection(
            EventType.CONNECT,
            self.ctx,
            self._now_ms(),
            self._connection_seq,
            {"username": event.unique_id, "room_id": str(event.room_id)},
        )
        self.emit(envelope)

    # -- lifecycle ----------------------------------------------------------------------
    def disconnected(self, reason: str) -> None:
        self.check_expected()
        self._response = None
        self._connection_seq += 1
        self.emit(
            normalise.connection(
                EventType.DISCONNECT, self.ctx, self._now_ms(), self._connection_seq, {"reason": reason}
            )
        )

    def expire_streaks(self, timeout_s: float) -> None:
        for closed in self._streaks.expire(self._clock(), timeout_s):
            self._emit_closed(closed)

    def flush_streaks(self) -> None:
        for closed in self._streaks.close_all():
            self._emit_closed(closed)

    def _emit_closed(self, closed: Any) -> None:
        description, user = self._gift_meta.pop(closed.key, ({}, None))
        self.emit(normalise.gift_event(closed, description, user, self.ctx), method="WebcastGiftMessage")
