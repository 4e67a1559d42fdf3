"""Routes TikTokLive events into the publisher: dedupe, fold gift streaks, filter, count.

Handlers are synchronous on purpose: pyee calls them inline from the library's receive
loop (an async handler would cost a task per message). A synchronous handler that raises
kills the library's connection task, so every handler is wrapped: an exception is logged,
counted and the message dropped — the socket keeps going.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from TikTokLive import TikTokLiveClient
from TikTokLive.events import proto_events as pe
from TikTokLive.events.custom_events import (
    ConnectEvent,
    FollowEvent,
    LiveEndEvent,
    ShareEvent,
    UnknownEvent,
)

from tiktok_service.connector import metrics, normalise
from tiktok_service.domain.connector_status import ConnectorStatus
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.events import Envelope, EventType, User
from tiktok_service.domain.streaks import GiftStreaks

log = logging.getLogger(__name__)

Sink = Callable[[Envelope], object]


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
        self.live_ended = False
        self.last_activity = clock()

    # -- wiring -------------------------------------------------------------------------
    def attach(self, client: TikTokLiveClient) -> None:
        handlers: list[tuple[type[Any], Callable[[Any], None]]] = [
            (pe.CommentEvent, self._on_comment),
            (pe.GiftEvent, self._on_gift),
            (pe.LikeEvent, self._on_like),
            (pe.JoinEvent, self._on_join),
            (FollowEvent, self._on_social),
            (ShareEvent, self._on_social),
            (pe.RoomUserSeqEvent, self._on_viewers),
            (LiveEndEvent, self._on_live_end),
            (ConnectEvent, self._on_connect),
            (UnknownEvent, self._on_unknown),
        ]
        for event_class, handler in handlers:
            client.add_listener(event_class, self._guarded(handler))

    def _guarded(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        def guarded(event: Any) -> None:
            try:
                self.last_activity = self._clock()
                handler(event)
            except Exception:
                metrics.HANDLER_ERRORS.inc()
                metrics.EVENTS_DROPPED.labels(reason="handler_error").inc()
                log.exception("failed to normalise %s", type(event).__name__)

        return guarded

    # -- emission -----------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _fresh(self, event: Any, kind: EventType) -> bool:
        """Count the message; False when it is a replayed duplicate."""
        metrics.received.inc(kind.value)
        received = self._status.received
        received[kind.value] = received.get(kind.value, 0) + 1
        common = getattr(event, "common", None)
        msg_id = getattr(common, "msg_id", 0) if common is not None else 0
        if isinstance(msg_id, int) and msg_id > 0 and not self._dedupe.add(str(msg_id)):
            metrics.DUPLICATES.inc()
            return False
        return True

    def emit(self, envelope: Envelope, *, drift: bool = False) -> None:
        if drift:
            metrics.SCHEMA_DRIFT.labels(type=envelope.type.value).inc()
            if not self._dedupe.add(envelope.id):  # content-hash ids dedupe here
                metrics.DUPLICATES.inc()
                return
        if self._types and envelope.type not in self._types:
            metrics.EVENTS_DROPPED.labels(reason="filtered").inc()
            return
        self._status.last_event_at_ms = envelope.time_ms
        self._sink(envelope)

    def _emit_normalised(self, result: normalise.Normalised | None) -> None:
        if result is not None:
            self.emit(result.envelope, drift=result.drift)

    # -- handlers -----------------------------------------------------------------------
    def _on_comment(self, event: pe.CommentEvent) -> None:
        if self._fresh(event, EventType.COMMENT):
            self._emit_normalised(normalise.comment(event, self.ctx, self._now_ms()))

    def _on_like(self, event: pe.LikeEvent) -> None:
        if self._fresh(event, EventType.LIKE):
            self._emit_normalised(normalise.like(event, self.ctx, self._now_ms()))

    def _on_join(self, event: pe.JoinEvent) -> None:
        if self._fresh(event, EventType.JOIN):
            self._emit_normalised(normalise.join(event, self.ctx, self._now_ms()))

    def _on_social(self, event: pe.SocialEvent) -> None:
        kind = EventType.FOLLOW if isinstance(event, FollowEvent) else EventType.SHARE
        if self._fresh(event, kind):
            self._emit_normalised(normalise.social(event, self.ctx, self._now_ms()))

    def _on_viewers(self, event: pe.RoomUserSeqEvent) -> None:
        if self._fresh(event, EventType.VIEWER):
            result = normalise.viewers(event, self.ctx, self._now_ms())
            self._status.viewer_count = int(result.envelope.data["viewer_count"])
            self._emit_normalised(result)

    def _on_live_end(self, event: LiveEndEvent) -> None:
        self.live_ended = True
        if self._fresh(event, EventType.LIVE_END):
            self.flush_streaks()
            self._emit_normalised(normalise.live_end(event, self.ctx, self._now_ms()))

    def _on_gift(self, event: pe.GiftEvent) -> None:
        if not self._fresh(event, EventType.GIFT):
            return
        step, description, user, drift = normalise.gift_step(event, self._now_ms())
        if drift:
            metrics.SCHEMA_DRIFT.labels(type=EventType.GIFT.value).inc()
        if step.streakable:
            self._gift_meta[step.key] = (description, user)
            if self._gift_progress and not step.repeat_end:
                self.emit(normalise.gift_progress(step, description, user, self.ctx))
        closed = self._streaks.observe(step, self._clock())
        if closed is not None:
            self._gift_meta.pop(step.key, None)
            self.emit(normalise.gift_event(closed, description, user, self.ctx))

    def _on_unknown(self, event: UnknownEvent) -> None:
        # The library hands over the whole fetch result: pick out the messages it could not map.
        for message in getattr(event.raw, "messages", None) or []:
            if message.method in pe.EVENT_MAPPINGS:
                continue
            metrics.received.inc(EventType.UNKNOWN.value)
            key = str(message.msg_id) if message.msg_id else None
            if key is not None and not self._dedupe.add(key):
                continue
            self.emit(
                normalise.unknown(message.method, message.msg_id, bytes(message.payload), self.ctx, self._now_ms())
            )

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
        self.emit(normalise.gift_event(closed, description, user, self.ctx))
