"""Process entry of `tiktok-service persister`: build clients from settings, run, exit.

Everything long-lived is created here and passed down; SIGTERM/SIGINT ask the loop to
stop, and a stop that does not finish within SHUTDOWN_GRACE_S (a database call hung on a
dead network) cancels it, so the pod always exits before Kubernetes kills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from tiktok_service import logs
from tiktok_service.health_server import HealthServer
from tiktok_service.persister.consumer import Persister
from tiktok_service.persister.metrics import PersisterMetrics
from tiktok_service.settings import PersisterSettings

log = logging.getLogger(__name__)

#: Below Kubernetes' default 30 s terminationGracePeriodSeconds.
SHUTDOWN_GRACE_S: Final = 20.0
#: Bounds on single calls, so a dead peer turns into an error the retry loop handles.
DB_CONNECT_TIMEOUT_S: Final = 10.0
DB_COMMAND_TIMEOUT_S: Final = 60.0
REDIS_CONNECT_TIMEOUT_S: Final = 5.0
#: Net allocations of container objects between two young-generation collections
#: (CPython's default: 700). The persister holds a few such objects per entry (hiredis'
#: reply lists, records) for the life of a batch, so with the default nearly every one of
#: them is scanned, promoted and scanned again by full collections, which cost ~20% of its
#: Python time in the benchmark. Above the size of a batch in flight, young collections
#: become rare and find its objects already freed; garbage in cycles waits a little longer.
GC_YOUNG_THRESHOLD: Final = 50_000


class HiredisConnection(aioredis.Connection):
    """A TCP connection that packs commands with hiredis.

    redis-py parses replies with hiredis whenever it is installed, but its asyncio
    connection packs commands in Python (~0.9 us per argument; its sync twin uses hiredis,
    ~0.3 us). That matters here: an XACK carries one argument per entry of a batch.
    """

    _packer: Final = HiredisRespSerializer()  # stateless

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        packed: list[bytes] = self._packer.pack(*args)  # type: ignore[arg-type]  # redis-py annotates *args as List
        return packed


def default_consumer_name() -> str:
    """hostname-pid: the pod name in Kubernetes, unique per process on a dev machine."""
    return f"{socket.gethostname()}-{os.getpid()}"


@contextlib.asynccontextmanager
async def open_persister(
    settings: PersisterSettings, *, registry: CollectorRegistry, consumer_name: str | None = None
) -> AsyncIterator[Persister]:
    """A Persister with its own Redis client and PostgreSQL pool, closed on exit.

    Nothing connects here: the pool has min_size 0 and Redis connects on first use, so a
    persister can start before its databases and wait for them in its retry loop.
    """
    redis = aioredis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        # Longer than the XREADGROUP block, or every idle read would time out.
        socket_timeout=settings.block_ms / 1000 + 10,
        # One quick retry for a stale pooled connection; outages are the loop's business.
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1),
        # For redis:// only: rediss:// and unix:// URLs pick their own class (the URL wins).
        **({"connection_class": HiredisConnection} if HIREDIS_AVAILABLE else {}),
    )
    if not HIREDIS_AVAILABLE:
        log.warning("hiredis is not installed: Redis replies and commands cost several times more CPU")
    pool = asyncpg.create_pool(
        settings.database_url,
        min_size=0,
        max_size=2,
        timeout=DB_CONNECT_TIMEOUT_S,
        command_timeout=DB_COMMAND_TIMEOUT_S,
        reset=_keep_session,
    )
    try:
        await pool
        yield Persister(
            redis=redis,
            pool=pool,
            settings=settings,
            consumer_name=consumer_name or settings.consumer_name or default_consumer_name(),
            metrics=PersisterMetrics.create(registry),
        )
    finally:
        await pool.close()
        await redis.aclose()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without the default reset query (RESET ALL, UNLISTEN *, ...).

    The persister's connections carry no session state to clean (no LISTEN, no SET, no
    session advisory locks), and the staging temp table should survive between batches.
    Skipping the reset saves a round trip per batch.
    """


def configure_gc() -> None:
    """Tune the garbage collector for a persister process (see GC_YOUNG_THRESHOLD).

    Process-wide, so called by process entry points only (this module's and benchmarks'),
    never by a library object that may share its process with others.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def run_persister(settings: PersisterSettings, *, handle_signals: bool = True) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 1 when the loop died of a bug."""
    logs.configure("persister", settings.log_level)
    configure_gc()
    registry = CollectorRegistry()
    async with open_persister(settings, registry=registry) as persister:

        def probe() -> tuple[bool, dict[str, Any]]:
            # Alive while the loop runs, even when retrying: restarting the pod would not
            # bring PostgreSQL back. The state (and the metrics) say what it is doing.
            return persister.state != "stopped", {"state": persister.state, "consumer": persister.group.consumer}

        health = HealthServer(host="0.0.0.0", port=settings.http_port, probe=probe, registry=registry)
        await health.start()
        log.info("persister starting", extra={"consumer": persister.group.consumer})
        task = asyncio.create_task(persister.run(), name="persister")
        loop = asyncio.get_running_loop()
        deadline: list[asyncio.TimerHandle] = []

        def on_signal() -> None:
            log.info("stop requested; finishing the current batch")
            persister.stop()
            if not deadline:
                deadline.append(loop.call_later(SHUTDOWN_GRACE_S, task.cancel))

        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal)
        try:
            await asyncio.wait({task})
        finally:
            for handle in deadline:
                handle.cancel()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await health.stop()
    if task.cancelled():
        log.warning("persister did not stop in time; in-flight batch abandoned (it will be reclaimed)")
        return 0
    if (exc := task.exception()) is not None:
        log.error("persister crashed", exc_info=exc)
        return 1
    log.info("persister stopped")
    return 0
