"""The connector process: connect, publish, reconnect, report, exit with a meaningful code.

Lifecycle (every loop bounded, every task owned by the runner's TaskGroup):
- `run()` starts the publisher, the status heartbeat and the connection loop;
- the connection loop asks `outcomes` what to do after each attempt (reconnect with
  backoff, wait for the user to go live, or exit with a documented code);
- `stop()` (SIGTERM) closes the socket, closes open gift streaks, drains the buffer to
  Redis within `drain_timeout_s` and writes the final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import redis.asyncio as aioredis
from TikTokLive import TikTokLiveClient
from TikTokLive.client.logger import TikTokLiveLogHandler

from tiktok_service.connector import (
    client_options,
    metrics,
    outcomes,
    proxy_failover,
    publisher,
    router,
    status_reporter,
    transport,
)
from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus
from tiktok_service.domain.dedupe import RecentIds
from tiktok_service.domain.events import EventType
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.settings import ConnectorSettings

log = logging.getLogger(__name__)


class _ParseFailureCounter(logging.Handler):
    """Counts the messages TikTokLive could not decode (it logs and skips them)."""

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Failed to parse"):
            metrics.EVENTS_DROPPED.labels(reason="malformed").inc()


def configure_tiktok_urls(settings: ConnectorSettings) -> None:
    """Point the library at TikTok (default) or at our simulator, with our locale and redaction (process-wide)."""
    client_options.configure_library(settings)


class ConnectorRunner:
    def __init__(self, settings: ConnectorSettings, *, redis: aioredis.Redis, seed: int | None = None) -> None:
        self.settings = settings
        self.status = ConnectorStatus()
        self._redis = redis
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()
        self._client: TikTokLiveClient | None = None
        self._attempt: asyncio.Task[outcomes.Ended] | None = None
        self._policy = outcomes.Policy(
            wait_for_live=settings.wait_for_live,
            live_poll_interval_s=settings.live_poll_interval_s,
            backoff_base_s=settings.backoff_base_s,
            backoff_cap_s=settings.backoff_cap_s,
            max_reconnects=settings.max_reconnects,
        )
        self.publisher = publisher.Publisher(
            redis,
            livestream_id=settings.livestream_id,
            buffer_size=settings.buffer_size,
            batch_size=settings.publish_batch,
            type_maxlen=settings.type_stream_maxlen,
            livestream_maxlen=settings.livestream_stream_maxlen,
            ttl_s=settings.livestream_stream_ttl_s,
        )
        self.router: router.EventRouter | None = None
        self.exit_code: ExitCode | None = None
        self.proxies = proxy_failover.ProxyFailover(settings.proxy_endpoints, key=settings.livestream_id)

    # -- public lifecycle ---------------------------------------------------------------
    def stop(self) -> None:
        """Request a clean shutdown (idempotent; safe from a signal handler)."""
        self._stopping.set()
        if self._attempt is not None and not self._attempt.done():
            # Live: close the socket cleanly (the attempt then returns STOPPED). Still
            # connecting (room lookup, sign, handshake): abandon the attempt.
            if self.status.phase is ConnectorPhase.LIVE and self._client is not None:
                asyncio.get_running_loop().create_task(self._client.disconnect())
            else:
                self._attempt.cancel()

    async def run(self) -> ExitCode:
        seen = await publisher.recent_ids(self._redis, self.settings.livestream_id, self.settings.dedupe_window)
        self.router = router.EventRouter(
            livestream_id=self.settings.livestream_id,
            sink=self.publisher.offer,
            dedupe=RecentIds(self.settings.dedupe_window, seen),
            status=self.status,
            event_types=[EventType(t) for t in self.settings.event_types],
            gift_progress=self.settings.gift_progress,
        )
        if self.settings.room_id:
            self.router.ctx.room_id = self.settings.room_id
        parse_counter = _ParseFailureCounter()
        TikTokLiveLogHandler.get_logger().addHandler(parse_counter)
        reporter = status_reporter.StatusReporter(
            self._redis,
            self.settings.livestream_id,
            self.status,
            interval_s=self.settings.heartbeat_interval_s,
            ttl_s=self.settings.heartbeat_ttl_s,
            buffer_depth=lambda: self.publisher.pending,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                flusher = tasks.create_task(self.publisher.run(), name="publisher")
                heartbeat = tasks.create_task(reporter.run(), name="heartbeat")
                code = await self._connection_loop()
                self.router.flush_streaks()
                self.publisher.close()
                try:
                    await asyncio.wait_for(asyncio.shield(flusher), self.settings.drain_timeout_s)
                except TimeoutError:
                    log.error("exiting with unpublished events", extra={"pending": self.publisher.pending})
                    self.publisher.abandon()
                    flusher.cancel()
                # The flags end both loops even if a cancel is swallowed (see `StatusReporter.stop`).
                reporter.stop()
                heartbeat.cancel()
        finally:
            TikTokLiveLogHandler.get_logger().removeHandler(parse_counter)
        self.exit_code = code
        self.status.exit_code = int(code)
        await reporter.write_final()
        return code

    # -- the loop -----------------------------------------------------------------------
    async def _connection_loop(self) -> ExitCode:
        assert self.router is not None
        failures = 0
        while not self._stopping.is_set():
            self.status.phase = ConnectorPhase.RECONNECTING if self.status.reconnects else ConnectorPhase.CONNECTING
            self._attempt = asyncio.create_task(self._connect_once(), name="connection")
            try:
                ended = await self._attempt
            except asyncio.CancelledError:
                if not self._stopping.is_set() or not self._attempt.cancelled():
                    raise
                ended = outcomes.Ended.STOPPED
            except Exception as exc:
                failures += 1
                self.status.last_error = client_options.scrub(f"{type(exc).__name__}: {exc}")[:500]
                self.proxies.after_failure(exc)
                decision = outcomes.after_error(exc, failures, self._policy, self._rng)
            else:
                failures = 0
                decision = outcomes.after_end(ended, self._policy)
            if self._stopping.is_set():
                decision = outcomes.after_end(outcomes.Ended.STOPPED, self._policy)
            log.info(
                "connection attempt over",
                extra={
                    "action": decision.action.value,
                    "reason": decision.reason,
                    "delay_s": round(decision.delay_s, 3),
                },
            )
            if decision.action is outcomes.Action.EXIT:
                self.status.phase = _final_phase(decision.exit_code)
                self.status.reason = decision.reason
                return decision.exit_code
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
        self.status.phase = ConnectorPhase.STOPPED
        self.status.reason = "stopped"
        return ExitCode.STOPPED

    async def _sleep(self, seconds: float) -> None:
        """Sleep that ends early when a stop is requested."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    def _new_client(self) -> TikTokLiveClient:
        """A client for one attempt: through the current proxy, logged in when a session is configured."""
        client = TikTokLiveClient(**client_options.client_kwargs(self.settings, self.proxies.current))
        client_options.apply_session(client, self.settings)
        transport.install(client)
        assert self.router is not None
        self.router.attach(client)
        return client

    async def _connect_once(self) -> outcomes.Ended:
        """One connection, from room lookup to socket close. Raises on failure to connect."""
        assert self.router is not None
        client = self._client = self._new_client()
        stalled = False
        try:
            task = await asyncio.wait_for(
                client.start(room_id=self.settings.room_id, fetch_live_check=True),
                self.settings.connect_timeout_s,
            )
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
                    await client.disconnect()
            try:
                task.result()
            finally:
                self.status.disconnected_at_ms = int(time.time() * 1000)
                ended = self._ended(stalled)
                self.router.disconnected(ended.value if not task.exception() else "error")
        finally:
            self._client = None
            await _dispose(client)
        return ended

    def _ended(self, stalled: bool) -> outcomes.Ended:
        assert self.router is not None
        if self._stopping.is_set():
            return outcomes.Ended.STOPPED
        if self.router.live_ended:
            return outcomes.Ended.LIVE_END
        return outcomes.Ended.STALLED if stalled else outcomes.Ended.CLOSED


def _final_phase(code: ExitCode) -> ConnectorPhase:
    if code is ExitCode.STOPPED:
        return ConnectorPhase.STOPPED
    if code is ExitCode.LIVE_ENDED:
        return ConnectorPhase.ENDED
    return ConnectorPhase.FAILED


async def _dispose(client: TikTokLiveClient) -> None:
    """Close a client's socket and HTTP pools.

    `TikTokLiveClient.close()` drives its own event loop (`run_until_complete`) and cannot be
    awaited from inside one, so we close the parts ourselves.
    """
    with contextlib.suppress(Exception):
        await client.disconnect()
    with contextlib.suppress(Exception):
        await client.web.close()
    with contextlib.suppress(Exception):
        await client.web.signer.sdk_client.get_async_httpx_client().aclose()
