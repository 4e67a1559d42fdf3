"""Entry points: `run_operator(settings)` (programmatic, tests) and `main(argv)` (process).

The operator is started through kopf's API (`kopf.spawn_tasks` + `kopf.run_tasks`, what
`kopf.operator` does, with our own SIGTERM handling in between), never `kopf run file.py`:
settings, clients and the handler registry are built here, once, and passed down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
from collections.abc import Coroutine
from typing import Any

import kopf
from prometheus_client import CollectorRegistry

from tiktok_service import gc_tuning, kube_rest, logs
from tiktok_service.health_server import HealthServer
from tiktok_service.operator import handlers, k8s, kopf_tuning, model, reconciler, store
from tiktok_service.operator.login import Login
from tiktok_service.operator.metrics import OperatorMetrics
from tiktok_service.settings import OperatorSettings

log = logging.getLogger(__name__)

ANNOTATIONS_PREFIX = "tiktok-service.io"


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf tuned for ~1,000 Livestreams: quiet, bounded, and using our own annotation prefix."""
    tuned = kopf.OperatorSettings()
    tuned.persistence.finalizer = model.FINALIZER
    # Written only by kopf's "touch" when a daemon is slow to stop (no handler progress to keep).
    tuned.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATIONS_PREFIX)
    tuned.persistence.diffbase_storage = kopf_tuning.NoDiffBase()
    # We post our own Events on transitions; kopf's per-handler Events would be 1,000s of "succeeded".
    tuned.posting.level = logging.WARNING
    # Least privilege: no CRD or namespace listing; served namespaces are named exactly.
    tuned.scanning.disabled = True
    tuned.queueing.worker_limit = settings.worker_limit
    # Watches are re-established every ~5 minutes instead of hanging on a silently dead socket.
    tuned.watching.server_timeout = 270
    tuned.watching.client_timeout = 300
    tuned.watching.connect_timeout = 30
    tuned.networking.request_timeout = 60
    tuned.peering.lifetime = settings.peering_lifetime_s
    return tuned


async def _relay(flag: Any, stopping: asyncio.Event) -> None:
    """Set `stopping` once a caller's flag is set (asyncio or threading Event, or a Future)."""
    if isinstance(flag, asyncio.Event):
        await flag.wait()
    elif isinstance(flag, asyncio.Future):
        await asyncio.wait([flag])
    else:
        # A threading.Event has no awaitable side; a thread blocked in wait() would outlive a crash.
        while not flag.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    stopping.set()


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _handle_signals(stopping: asyncio.Event) -> bool:
    """SIGTERM/SIGINT set `stopping` (replacing kopf's own handlers, which only kopf could see).

    The operator's code needs to know it is stopping: a login refused while stopping gives
    up at once instead of retrying (see `login`). False (nothing installed) outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    loop = asyncio.get_running_loop()

    def on_signal(number: signal.Signals) -> None:
        if not stopping.is_set():
            log.info("signal received: the operator is stopping", extra={"signal": number.name})
        stopping.set()

    for number in _SIGNALS:
        loop.add_signal_handler(number, on_signal, number)
    return True


async def run_operator(
    settings: OperatorSettings,
    *,
    stop_flag: Any = None,
    ready_flag: Any = None,
    metrics: OperatorMetrics | None = None,
) -> int:
    """Run until `stop_flag` is set (or SIGTERM/SIGINT in the main thread); returns the exit code.

    0 after a clean stop; 1 when kopf did not stop within `stop_timeout_s` of the stop (`stop_within`).

    `stop_flag` is an asyncio or threading Event or an asyncio Future; `ready_flag` any kopf flag.
    """
    credentials = kube_rest.load_credentials(settings.kubeconfig)
    registry = kopf.OperatorRegistry()
    metrics = metrics if metrics is not None else OperatorMetrics(CollectorRegistry())
    priority = settings.peering_priority if settings.peering_priority is not None else random.randint(1, 2**31 - 1)
    stopping = asyncio.Event()
    login = Login(credentials, metrics, stopping, max_connections=handlers.KOPF_CONNECTIONS)
    relay = asyncio.create_task(_relay(stop_flag, stopping), name="stop-flag relay") if stop_flag is not None else None
    try:
        async with (
            k8s.KubeClient(credentials) as kube,
            store.Store(redis_url=settings.redis_url, database_url=settings.database_url) as stores,
        ):
            runtime = reconciler.Runtime(settings=settings, kube=kube, store=stores, metrics=metrics)
            handlers.register(registry, runtime, login)
            health = HealthServer(
                host="0.0.0.0",
                port=settings.http_port,
                probe=lambda: (
                    not login.refused,
                    {
                        "livestreams": metrics.served,
                        "priority": priority,
                        "credentials": "refused" if login.refused else "accepted",
                    },
                ),
                registry=metrics.registry,
            )
            await health.start()
            log.info("operator starting", extra={"namespaces": settings.namespaces or "*", "priority": priority})
            try:
                # kopf.operator() is spawn_tasks + run_tasks; split to install our signal handlers in between.
                stop_wait = asyncio.ensure_future(stopping.wait())  # before `existing`: kopf leaves it alone
                existing = asyncio.all_tasks()
                tasks = await kopf.spawn_tasks(
                    registry=registry,
                    settings=kopf_settings(settings),
                    clusterwide=not settings.namespaces,
                    namespaces=settings.namespaces,
                    standalone=settings.peering_name is None,
                    peering_name=settings.peering_name,
                    priority=priority,
                    stop_flag=stopping,
                    ready_flag=ready_flag,
                )
                handled = _handle_signals(stopping)
                try:
                    stopped = await stop_within(
                        kopf.run_tasks(tasks, ignored=existing), stop_wait, settings.stop_timeout_s
                    )
                finally:
                    stop_wait.cancel()
                    for number in _SIGNALS if handled else ():
                        asyncio.get_running_loop().remove_signal_handler(number)
            finally:
                await health.stop()
    finally:
        if relay is not None:
            relay.cancel()
    return 0 if stopped else 1


#: After the stop timeout, how long kopf's cancelled tasks get to unwind before we return anyway.
_CANCEL_GRACE_S = 5.0


async def stop_within(run: Coroutine[Any, Any, None], stopping: asyncio.Future[Any], timeout_s: float) -> bool:
    """Run `run` (kopf's tasks); once `stopping` is done, give it `timeout_s`: False if it overran.

    Our signal handlers replace kopf's, and with them its own SIGKILL safety net; kopf's peering
    clean-up against an API server that does not answer (not refusing: silent) retries until the
    kubelet's SIGKILL. Bounded here instead: past the timeout the tasks are cancelled (a few
    seconds to unwind), a line is logged and the operator exits 1, within the pod's grace period.
    """
    task = asyncio.ensure_future(run)
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=timeout_s)
        if task.done():
            task.result()  # kopf's own failure propagates as before
            return True
        log.error(
            "the operator did not stop in time: its tasks are cancelled and it exits 1",
            extra={"stop_timeout_s": timeout_s},
        )
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
        return False
    finally:
        if not task.done():
            task.cancel()


def main(settings: OperatorSettings) -> int:
    logs.configure("operator", settings.log_level)
    # kopf logs every handler call at INFO ("Handler 'pod_changed' succeeded"): per event, per object.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLogger().level))
    kopf_tuning.decode_watch_events_with_orjson()
    gc_tuning.tune_for_throughput()  # ~2 watch events per Livestream change, each a fresh object graph
    return asyncio.run(run_operator(settings))
