"""Glue between the pure decisions and the I/O layers, one loop per Livestream.

Each Livestream has one reconcile loop (a kopf daemon) that observes (its pod from the
in-memory pod index, its connector's report from Redis), decides (`lifecycle`, `status`),
acts (one pod call), and patches the status only when it changed. One loop per object
means actions on one Livestream never race each other. The loop sleeps until a pod or
spec change wakes it, a retry falls due, or `resync_interval_s` passes (to pick up
heartbeats, which arrive in Redis, not through the API).

Counters (viewers, events) alone are patched at most every `status_min_interval_s` per
Livestream; phase changes go out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import kopf

from tiktok_service.operator import desired, k8s, lifecycle, model, status
from tiktok_service.operator import store as stores
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.metrics import OperatorMetrics
from tiktok_service.settings import OperatorSettings

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
COMPONENT: Final = model.MANAGER
_ERROR_RETRY_S: Final = 2.0
_DELETE_WAIT_S: Final = 10.0


@dataclass
class Runtime:
    """What every handler shares: settings, clients, metrics and the loops' wake-up calls."""

    settings: OperatorSettings
    kube: k8s.KubeClient
    store: stores.Store
    metrics: OperatorMetrics
    wakeups: dict[Key, asyncio.Event] = field(default_factory=dict)
    generations: dict[Key, int] = field(default_factory=dict)
    finished: dict[Key, asyncio.Event] = field(default_factory=dict)

    def wake(self, key: Key) -> None:
        if (event := self.wakeups.get(key)) is not None:
            event.set()

    def spec_seen(self, key: Key, generation: int) -> None:
        """A Livestream event: wake its loop only when the spec changed (not for our own status patches)."""
        if self.generations.get(key) != generation:
            self.wake(key)


def pod_of(key: Key, pods: Iterable[model.PodObservation] | None) -> model.PodObservation | None:
    """The Livestream's connector pod among the indexed pods owned by it."""
    wanted = model.pod_name(key[1])
    return next((pod for pod in pods or () if pod.name == wanted), None)


class LivestreamLoop:
    """The in-memory side of one Livestream's reconciliation (lost on restart, by design)."""

    def __init__(self, runtime: Runtime, key: Key) -> None:
        self.runtime = runtime
        self.key = key
        self.written: dict[str, Any] | None = None  # the status as we last patched it
        self.last_patch = -math.inf  # monotonic time of that patch
        self.heartbeat: model.Heartbeat | None = None
        self.row_dirty = True  # write the row on the first pass: the previous operator may have died first

    def snapshot(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The Livestream as a plain dict, with the status we know we wrote (the watch may lag)."""
        current = self.written if self.written is not None else dict(body.get("status") or {})
        return {"metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {}), "status": current}

    async def reconcile(self, body: Mapping[str, Any], pod: model.PodObservation | None) -> float:
        """One observe-decide-act pass; returns the seconds until the next look is due."""
        settings = self.runtime.settings
        livestream = self.snapshot(body)
        self.runtime.generations[self.key] = int(livestream["metadata"].get("generation") or 0)
        counts: dict[str, int] | None
        try:
            self.heartbeat, counts = await self.runtime.store.connector_report(livestream["metadata"]["uid"])
        except stores.StoreUnavailable as exc:
            log.warning("redis unavailable; keeping the last report", extra={"error": str(exc)})
            counts = None
        now = time.time()
        found = lifecycle.assess(livestream, pod, self.heartbeat, now, settings)
        await self.act(livestream, found.action)
        wanted = status.desired_status(livestream, pod, self.heartbeat, counts, now, settings, assessment=found)
        delays = [settings.resync_interval_s]
        if found.action.requeue_after is not None:
            delays.append(found.action.requeue_after)
        if found.action.do is not Do.NOTHING:
            delays.append(_ERROR_RETRY_S)  # confirm the action took effect even if no event comes
        patch = status.status_patch(livestream["status"], wanted)
        wait = self.last_patch + settings.status_min_interval_s - time.monotonic()
        if patch and status.rate_limited(patch) and wait > 0:
            delays.append(wait)
        elif patch:
            await self.patch(livestream, wanted, patch)
        if self.row_dirty:
            await self.save_row(livestream, self.written or livestream["status"])
        self.runtime.metrics.observe_phase(self.key, wanted["phase"])
        return max(0.0, min(delays))

    async def act(self, livestream: Mapping[str, Any], action: lifecycle.Action) -> None:
        kube, metrics = self.runtime.kube, self.runtime.metrics
        namespace, name = self.key
        if action.do in {Do.DELETE_POD, Do.RECREATE_POD}:
            grace = 0 if action.do is Do.RECREATE_POD else None  # a finished pod has nothing to drain
            if await kube.delete_pod(namespace, model.pod_name(name), uid=action.pod_uid, grace_period_s=grace):
                metrics.pod_actions.labels(action="delete").inc()
        if action.do in {Do.CREATE_POD, Do.RECREATE_POD}:
            pod = desired.desired_pod(livestream, self.runtime.settings, restarts=action.restarts)
            if await kube.create_pod(pod) is not None:
                metrics.pod_actions.labels(action="create").inc()

    async def patch(self, livestream: Mapping[str, Any], wanted: dict[str, Any], patch: Mapping[str, Any]) -> None:
        namespace, name = self.key
        result = await self.runtime.kube.patch_status(namespace, name, patch)
        if result is None:
            return  # the Livestream is gone; the daemon is about to be stopped
        self.runtime.metrics.status_patches.inc()
        self.written, self.last_patch, self.row_dirty = wanted, time.monotonic(), True
        for event in status.transition_events(livestream["status"], wanted):
            await self.runtime.kube.post_event(
                livestream, type_=event.type, reason=event.reason, message=event.message, component=COMPONENT
            )

    async def save_row(self, livestream: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        try:
            await self.runtime.store.save_row(livestream, current)
        except stores.StoreUnavailable as exc:
            self.runtime.metrics.row_errors.inc()
            log.warning("could not write the livestreams row; retrying", extra={"error": repr(exc)})
            return
        self.row_dirty = False


async def _relay(stopped: kopf.DaemonStopped, wake: asyncio.Event) -> None:
    await stopped.wait()
    wake.set()


async def run(
    runtime: Runtime,
    key: Key,
    body: Mapping[str, Any],
    pods: Mapping[Key, Iterable[model.PodObservation]],
    stopped: kopf.DaemonStopped,
) -> None:
    """The reconcile loop of one Livestream, until kopf stops it (deletion, pause, exit)."""
    wake = runtime.wakeups[key] = asyncio.Event()
    done = runtime.finished[key] = asyncio.Event()
    relay = asyncio.create_task(_relay(stopped, wake), name=f"stop-relay {key}")
    loop = LivestreamLoop(runtime, key)
    try:
        while not stopped:
            wake.clear()
            started = time.monotonic()
            try:
                delay = await loop.reconcile(body, pod_of(key, pods.get(key)))
                runtime.metrics.reconciliations.labels(result="ok").inc()
            except (k8s.ApiError, aiohttp.ClientError, TimeoutError) as exc:
                runtime.metrics.reconciliations.labels(result="error").inc()
                log.warning("reconcile failed; retrying", extra={"livestream": key, "error": repr(exc)})
                delay = _ERROR_RETRY_S
            runtime.metrics.duration.observe(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
    finally:
        relay.cancel()
        runtime.metrics.observe_phase(key, None)
        runtime.wakeups.pop(key, None)
        runtime.generations.pop(key, None)
        done.set()


async def finalize(runtime: Runtime, key: Key, body: Mapping[str, Any]) -> None:
    """The Livestream is being deleted: remove its pod and close its row (no garbage collector needed)."""
    if (done := runtime.finished.get(key)) is not None:
        with contextlib.suppress(TimeoutError):  # kopf has cancelled the loop; let it unwind first
            await asyncio.wait_for(done.wait(), timeout=_DELETE_WAIT_S)
        runtime.finished.pop(key, None)
    namespace, name = key
    if await runtime.kube.delete_pod(namespace, model.pod_name(name)):
        runtime.metrics.pod_actions.labels(action="delete").inc()
    livestream = {"metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {})}
    await runtime.store.close_row(livestream, dict(body.get("status") or {}))
