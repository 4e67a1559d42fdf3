"""The connector process: connect, publish, reconnect, report, exit with a meaningful code.

Lifecycle (every loop bounded, every task owned by the runner's TaskGroup):
- `run()` starts the publisher, the status heartbeat and the connection loop;
- the connection loop asks `outcomes` what to do after each attempt (reconnect with
  backoff, wait for the user to go live, or exit with a documented code);
- `stop()` (SIGTERM) closes the socket (abandoning it when TikTok has not answered within
  `socket_shutdown.CLOSE_TIMEOUT_S`), closes open gift streaks, drains the buffer to Redis
  within `drain_timeout_s` (what is left is counted as dropped, reason `drain_timeout`) and
  writes the final status (within `FINAL_STATUS_TIMEOUT_S`): every step bounded and logged
  when it runs out, so the process exits well inside the pod's grace period;
- the connector claims its Livestream first (`fencing`): once a newer connector claims it,
  the next publish or heartbeat is refused, the runner stops as on SIGTERM (nothing more is
  written, not even the final status) and exits with `ExitCode.FENCED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from TikTokLive import TikTokLiveClient

from tiktok_service.connector import (
    client_options,
    fencing,
    metrics,
    outcomes,
    proxy_failover,
    publisher,
    room_check,
    router,
    sign_quota,
    socket_close,
    socket_shutdown,
    status_reporter,
    transport,
    verify_pages,
)
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.events import EventType
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings

log = logging.getLogger(__name__)

#: Longest wait for the final status write on shutdown (Redis may be down: it is then lost, logged).
FINAL_STATUS_TIMEOUT_S = 2.0


def configure_tiktok_urls(settings: ConnectorSettings) -> None:
    """Point the library at TikTok (default) or at our simulator, with our locale and redaction (process-wide)."""
    client_options.configure_library(settings)


class ConnectorRunner:
    def __init__(self, settings: ConnectorSettings, *, redis: RedisClient, seed: int | None = None) -> None:
        self.settings = settings
        self.status = ConnectorStatus()
        self._redis = redis
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()
        self._client: TikTokLiveClient | None = None
        self._attempt: asyncio.Task[outcomes.Ended] | None = None
        self._closing: asyncio.Task[bool] | None = None  # the socket's close on stop, kept until done
        # Set once the attempt's `finally` has begun: it has read `_closing` and disposes of
        # the client itself (bounded), so a stop then starts nothing more.
        self._attempt_ending = False
        self._policy = outcomes.Policy(
            wait_for_live=settings.wait_for_live,
            live_poll_interval_s=settings.live_poll_interval_s,
            backoff_base_s=settings.backoff_base_s,
            backoff_cap_s=settings.backoff_cap_s,
            max_reconnects=settings.max_reconnects,
            healthy_after_s=settings.healthy_after_s,
            not_found_attempts=settings.not_found_attempts,
            captcha_attempts=settings.captcha_attempts,
            blocked_attempts=settings.blocked_attempts,
            quota_wait_max_s=settings.quota_wait_max_s,
        )
        self.proxies = proxy_failover.ProxyFailover(settings.proxy_endpoints, key=settings.livestream_id)
        if settings.proxy_endpoints:
            self._policy = outcomes.with_proxy(self._policy, len(settings.proxy_endpoints))
        self._connected_at: float | None = None  # monotonic time the current attempt's socket opened
        self._closed = socket_close.CloseSeen()  # the close frame of the current attempt's socket
        # A configured room id names one LIVE: TikTok gives each LIVE a new one, so after a live
        # end (or an offline answer) the room is looked up by username again.
        self.room_id: int | None = settings.room_id
        self.proxy_rotations = 0  # attempts after which the next proxy of the list was asked for
        self.fence = fencing.Fence(
            redis,
            settings.livestream_id,
            owner=fencing.new_owner(settings.pod_uid),
            ttl_s=settings.livestream_stream_ttl_s,
            on_lost=self._superseded,
        )
        self.publisher = publisher.Publisher(
            redis,
            livestream_id=settings.livestream_id,
            buffer_size=settings.buffer_size,
            batch_size=settings.publish_batch,
            livestream_maxlen=settings.livestream_stream_maxlen,
            ttl_s=settings.livestream_stream_ttl_s,
            fence=self.fence,
            replay_window=settings.replay_window,
            wait_replicas=settings.replicas_to_wait,
            wait_timeout_ms=settings.replica_wait_timeout_ms,
            handover_ids=settings.dedupe_window,
        )
        self.router: router.EventRouter | None = None
        self.exit_code: ExitCode | None = None

    # -- public lifecycle ---------------------------------------------------------------
    def stop(self) -> None:
        """Request a clean shutdown (idempotent; safe from a signal handler)."""
        if not self._stopping.is_set():
            log.info("stop requested", extra={"phase": self.status.phase.value, "buffered": self.publisher.pending})
        self._stopping.set()
        if self._attempt is not None and not self._attempt.done() and not self._attempt_ending:
            # Live: close the socket, bounded (the attempt then returns STOPPED; it awaits this
            # task). Still connecting (room lookup, sign, handshake): abandon the attempt.
            if self.status.phase is ConnectorPhase.LIVE and self._client is not None:
                if self._closing is None:
                    self._closing = asyncio.get_running_loop().create_task(
                        socket_shutdown.close(self._client, self._closed.protocol), name="socket-close"
                    )
            else:
                self._attempt.cancel()

    def _superseded(self, by: fencing.Holder) -> None:
        """A newer connector claimed the Livestream: stop as on SIGTERM, exit FENCED."""
        self.status.last_error = f"superseded by the connector of epoch {by.epoch} ({by.owner})"[:500]
        self.stop()

    async def run(self) -> ExitCode:
        # The duplicate filter learns the livestream's newest ids when the publisher takes the
        # livestream over (at its first publish, after the claim): a predecessor still running
        # until then adds to them, and buffered duplicates are dropped then.
        dedupe = RecentIds(self.settings.dedupe_window)
        self.publisher.on_take_over = dedupe.add_older
        self.router = router.EventRouter(
            livestream_id=self.settings.livestream_id,
            sink=self.publisher.offer,
            dedupe=dedupe,
            status=self.status,
            event_types=[EventType(t) for t in self.settings.event_types],
            gift_progress=self.settings.gift_progress,
        )
        if self.settings.room_id:
            self.router.ctx.room_id = self.settings.room_id
        reporter = status_reporter.StatusReporter(
            self._redis,
            self.settings.livestream_id,
            self.status,
            interval_s=self.settings.heartbeat_interval_s,
            ttl_s=self.settings.heartbeat_ttl_s,
            buffer_depth=lambda: self.publisher.pending,
            fence=self.fence,
        )
        async with asyncio.TaskGroup() as tasks:
            flusher = tasks.create_task(self.publisher.run(), name="publisher")
            heartbeat = tasks.create_task(reporter.run(), name="heartbeat")
            code = await self._connection_loop()
            self.router.flush_streaks()
            self.publisher.close()
            try:
                await asyncio.wait_for(asyncio.shield(flusher), self.settings.drain_timeout_s)
            except TimeoutError:
                # The batch being sent may already be in Redis (only its answer is missing): it
                # is not counted as dropped. Its ids are in the stream, so the next connector's
                # duplicate filter, seeded from the stream, drops them if TikTok sends them again.
                unpublished, unconfirmed = self.publisher.buffered, self.publisher.in_flight
                log.error(
                    "exiting with unpublished events",
                    extra={
                        "pending": unpublished,
                        "unconfirmed": unconfirmed,
                        "drain_timeout_s": self.settings.drain_timeout_s,
                    },
                )
                metrics.EVENTS_DROPPED.labels(reason="drain_timeout").inc(unpublished)
                self.publisher.abandon()
                flusher.cancel()
            # The flags end both loops even if a cancel is swallowed (see `StatusReporter.stop`).
            reporter.stop()
            heartbeat.cancel()
        self.exit_code = code
        self.status.exit_code = int(code)
        try:
            await asyncio.wait_for(reporter.write_final(), FINAL_STATUS_TIMEOUT_S)
        except TimeoutError:
            log.error("final status not written in time", extra={"timeout_s": FINAL_STATUS_TIMEOUT_S})
        return code

    # -- the loop -----------------------------------------------------------------------
    async def _connection_loop(self) -> ExitCode:
        assert self.router is not None
        streak = outcomes.Streak()
        check_room = True  # first attempt, and after any failure: is the room age-restricted?
        while not self._stopping.is_set():
            self.status.phase = ConnectorPhase.RECONNECTING if self.status.reconnects else ConnectorPhase.CONNECTING
            self._connected_at = None
            self._closed = socket_close.CloseSeen()
            self._attempt = asyncio.create_task(self._connect_once(check_room), name="connection")
            outcome: outcomes.Outcome
            try:
                ended = await self._attempt
            except asyncio.CancelledError:
                if not self._stopping.is_set() or not self._attempt.cancelled():
                    raise
                outcome = outcomes.Outcome(outcomes.Kind.STOPPED)
            except Exception as exc:
                self.status.last_error = client_options.scrub(f"{type(exc).__name__}: {exc}")[:500]
                outcome = outcomes.classify(exc, lived_s=self._lived_s(), now=time.time(), proxied=self._policy.proxied)
            else:
                outcome = outcomes.of_end(ended, self._lived_s(), self._closed.code)
                if self._closed.code not in (None, 1000, 1001):
                    self.status.last_error = f"closed by the server: {self._closed.code} {self._closed.reason}"[:500]
            if self._stopping.is_set():
                outcome = outcomes.Outcome(outcomes.Kind.FENCED if self.fence.lost else outcomes.Kind.STOPPED)
            decision, streak = outcomes.decide(outcome, streak, self._policy, self._rng, now=time.time())
            if self.room_id is not None and outcomes.ends_pinned_room(outcome.kind):
                log.info(
                    "configured room id no longer live; looking the room up by username",
                    extra={"room_id": self.room_id},
                )
                self.room_id = None
            check_room = streak.failures > 0 or decision.action is outcomes.Action.WAIT_FOR_LIVE
            log.info(
                "connection attempt over",
                extra={
                    "action": decision.action.value,
                    "reason": decision.reason,
                    "delay_s": round(decision.delay_s, 3),
                    "failures": streak.failures,
                    "lived_s": None if outcome.lived_s is None else round(outcome.lived_s, 3),
                },
            )
            if decision.action is outcomes.Action.EXIT:
                self.status.phase = _final_phase(decision.exit_code)
                self.status.reason = decision.reason
                # The operator waits until then before it starts a new pod (exit 16).
                self.status.next_retry_at_ms = int(decision.retry_at * 1000) if decision.retry_at else None
                return decision.exit_code
            if decision.rotate_proxy:
                self._rotate_proxy(decision.reason)
            if decision.action is outcomes.Action.WAIT_FOR_LIVE:
                self.status.phase = ConnectorPhase.WAITING
                self.status.reason = decision.reason
            else:
                self.status.phase = ConnectorPhase.RECONNECTING
                self.status.reason = decision.reason
                self.status.reconnects += 1
                metrics.RECONNECTS.labels(reason=decision.reason).inc()
            self.status.next_retry_at_ms = int((time.time() + decision.delay_s) * 1000)
            await self._sleep(decision.delay_s)
            self.status.next_retry_at_ms = None
        if self.fence.lost is not None:
            self.status.phase = ConnectorPhase.STOPPED
            self.status.reason = outcomes.Kind.FENCED.value
            return ExitCode.FENCED
        self.status.phase = ConnectorPhase.STOPPED
        self.status.reason = "stopped"
        return ExitCode.STOPPED

    def _lived_s(self) -> float | None:
        """How long the last attempt's socket was up (None: it never opened)."""
        return None if self._connected_at is None else time.monotonic() - self._connected_at

    def _rotate_proxy(self, reason: str) -> None:
        """The next attempt should go out through the next proxy of the list (if there is one)."""
        self.proxy_rotations += 1
        self.proxies.rotate(reason)

    async def _sleep(self, seconds: float) -> None:
        """Sleep that ends early when a stop is requested."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    def _new_client(self) -> TikTokLiveClient:
        """A client for one attempt, with every part of the library we replace installed.

        Through the current proxy, a verified sign server, logged in if configured; our frame
        reader (whose close frame `socket_close` keeps), room-info, room-lookup and sign routes
        that tell TikTok's refusals apart; our handlers.
        """
        client = TikTokLiveClient(**client_options.client_kwargs(self.settings, self.proxies.current))
        client_options.prepare_client(client, self.settings)
        transport.install(client)
        room_check.install(client)
        verify_pages.install(client)
        sign_quota.install(client)
        self._closed = socket_close.watch(client)  # wraps the reader `transport` installed
        assert self.router is not None
        self.router.attach(client)
        return client

    async def _connect_once(self, check_room: bool = True) -> outcomes.Ended:
        """One connection, from room lookup to socket close. Raises on failure to connect.

        `check_room` asks for the room info first (one request) to tell an age-restricted
        room apart (`room_check`).
        """
        assert self.router is not None
        client = self._client = self._new_client()
        self._attempt_ending = False
        stalled = False
        try:
            task = await asyncio.wait_for(
                client.start(room_id=self.room_id, fetch_live_check=True, fetch_room_info=check_room),
                self.settings.connect_timeout_s,
            )
            self._connected_at = time.monotonic()
            self.router.live_ended = False
            self.status.phase = ConnectorPhase.LIVE
            self.status.room_id = client.room_id
            self.status.connected_at_ms = int(time.time() * 1000)
            self.status.last_error = ""
            self.status.reason = ""
            self.router.last_activity = time.time()
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.settings.watchdog_interval_s)
                if done:
                    break
                self.router.expire_streaks(self.settings.gift_streak_timeout_s)
                if time.time() - self.router.last_activity > self.settings.stall_timeout_s:
                    stalled = True
                    log.warning("no traffic, reconnecting", extra={"stall_timeout_s": self.settings.stall_timeout_s})
                    # Bounded: a silent push server is exactly what the unbounded close waits on.
                    await socket_shutdown.close(client, self._closed.protocol)
            try:
                # Cancelled: a bounded close (the watchdog's or the stop's) ended a receive
                # loop that did not end after the socket was abandoned. The attempt still ends.
                if not task.cancelled():
                    task.result()
            finally:
                self.status.disconnected_at_ms = int(time.time() * 1000)
                ended = self._ended(stalled)
                failed = not task.cancelled() and task.exception() is not None
                self.router.disconnected("error" if failed else ended.value)
        finally:
            self._attempt_ending = True  # before `_closing` is read: a later stop starts no close
            self._client = None
            closing, self._closing = self._closing, None
            if closing is not None:
                await closing  # bounded by `socket_shutdown.close`
            await _dispose(client, self._closed.protocol, close_socket=closing is None)
        return ended

    def _ended(self, stalled: bool) -> outcomes.Ended:
        assert self.router is not None
        if self._stopping.is_set():
            return outcomes.Ended.STOPPED
        if self.router.live_ended:
            return outcomes.Ended.LIVE_END
        return outcomes.Ended.STALLED if stalled else outcomes.Ended.CLOSED


def _final_phase(code: ExitCode) -> ConnectorPhase:
    if code in (ExitCode.STOPPED, ExitCode.FENCED):
        return ConnectorPhase.STOPPED
    if code is ExitCode.LIVE_ENDED:
        return ConnectorPhase.ENDED
    return ConnectorPhase.FAILED


async def _dispose(client: TikTokLiveClient, protocol: object, *, close_socket: bool = True) -> None:
    """Close a client's socket (unless the stop's close already ran: `close_socket=False`) and HTTP pools.

    `TikTokLiveClient.close()` drives its own event loop (`run_until_complete`) and cannot be
    awaited from inside one, so we close the parts ourselves. The socket's close is bounded:
    once the attempt is over nobody reads the socket, and a websockets protocol whose receive
    queue is full then never sees the peer's close frame (`socket_shutdown`).
    """
    if close_socket:
        await socket_shutdown.close(client, protocol)
    with contextlib.suppress(Exception):
        await client.web.close()
    with contextlib.suppress(Exception):
        await client.web.signer.sdk_client.get_async_httpx_client().aclose()
