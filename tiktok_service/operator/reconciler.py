"""Glue between the pure decisions and the I/O layers, one loop per Livestream.

Each Livestream has one reconcile loop (a kopf daemon) that observes (its pod from the
in-memory pod index, its connector's report from Redis), decides (`lifecycle`, `status`),
acts (one pod call), and patches the status only when it changed. One loop per object
means actions on one Livestream never race each other. The loop sleeps until a pod or
spec change wakes it, a retry falls due, or `resync_interval_s` passes (to pick up
heartbeats, which arrive in Redis, not through the API).

API writes are the operator's cost at scale (each one is also a watch event that kopf
processes), so a pass writes as little as it can: a pass that creates a pod writes no
status ("creating" is not news), nor does the pod's first echo while the scheduler has not
decided (see `LivestreamLoop.status_hold_s`); status patches in flight are bounded
(`status_write_concurrency`) so that, in a burst, pods come first. Counters (viewers, events) alone are
patched at most every `status_min_interval_s` per Livestream; phase changes go out at once.

Deletion (`finalize`): the loop stops acting as soon as its Livestream shows a
`deletionTimestamp`; `finalize` waits for it, then deletes the pod and closes the row,
retrying until both are done, while kopf's finalizer holds the Livestream.
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

from tiktok_service.operator import desired, k8s, lifecycle, model, refusals, status
from tiktok_service.operator import store as stores
from tiktok_service.operator.lifecycle import Do
from tiktok_service.operator.metrics import OperatorMetrics
from tiktok_service.settings import OperatorSettings

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
COMPONENT: Final = model.MANAGER
_ERROR_RETRY_S: Final = 2.0
_FINALIZE_RETRY_S: Final = 5.0
_EXPECTATION_S: Final = 60.0  # a safety net: the pod's next watch event normally ends an expectation
_CREATES: Final = frozenset({Do.CREATE_POD, Do.RECREATE_POD})
_SCHEDULER_GRACE_S: Final = 5.0  # how long a new pod's status waits for the scheduler's verdict


@dataclass
class Runtime:
    """What every handler shares: settings, clients, metrics and the running loops."""

    settings: OperatorSettings
    kube: k8s.KubeClient
    store: stores.Store
    metrics: OperatorMetrics
    loops: dict[Key, LivestreamLoop] = field(default_factory=dict)
    _status_writes: asyncio.Semaphore | None = None

    @property
    def status_writes(self) -> asyncio.Semaphore:
        """Bounds status patches in flight (`status_write_concurrency`); created in the running loop."""
        if self._status_writes is None:
            self._status_writes = asyncio.Semaphore(self.settings.status_write_concurrency)
        return self._status_writes

    def pod_changed(self, key: Key) -> None:
        """A watch event of the Livestream's pod: the index now shows it (or something newer)."""
        if (loop := self.loops.get(key)) is not None:
            loop.pod_events += 1
            loop.wakeup.set()

    def livestream_gone(self, key: Key) -> None:
        """The Livestream was removed while its loop still runs: it never held kopf's finalizer.

        (Deleted within moments of its creation. A Livestream that held it was finalized first,
        and its loop had stopped.) kopf stops daemons only through the finalizer, so the loop
        is told here; it had created nothing yet.
        """
        if (loop := self.loops.get(key)) is not None:
            loop.gone = True
            loop.wakeup.set()

    def livestream_seen(self, key: Key, body: Mapping[str, Any]) -> None:
        """A Livestream event: wake its loop for a new spec or for the finalizer it waits for.

        Not for the echo of our own status patches, which change neither.
        """
        if (loop := self.loops.get(key)) is None:
            return
        if loop.generation != generation_of(body) or (not loop.held and held(body)):
            loop.wakeup.set()


def pod_of(key: Key, pods: Iterable[model.PodObservation] | None) -> model.PodObservation | None:
    """The Livestream's connector pod among the indexed pods owned by it."""
    wanted = model.pod_name(key[1])
    return next((pod for pod in pods or () if pod.name == wanted), None)


class LivestreamLoop:
    """The in-memory side of one Livestream's reconciliation (lost on restart, by design)."""

    def __init__(self, runtime: Runtime, key: Key) -> None:
        self.runtime = runtime
        self.key = key
        self.wakeup = asyncio.Event()  # set by pod and spec events, and by `finalize`
        self.done = asyncio.Event()  # set once the loop has stopped acting
        self.generation: int | None = None  # of the spec the last pass saw
        self.held = False  # whether the last pass saw kopf's finalizer on the Livestream
        self.gone = False  # removed from the API without ever holding the finalizer
        self.written: dict[str, Any] | None = None  # the status as we last patched it
        self.last_patch = -math.inf  # monotonic time of that patch
        self.heartbeat: model.Heartbeat | None = None
        self.row_dirty = True  # write the row on the first pass: the previous operator may have died first
        self.pod_events = 0  # watch events of the pod seen so far
        self.created: model.PodObservation | None = None  # our pod writes the index may not show yet
        self.deleted_uid: str | None = None
        self.expect_events = 0  # `pod_events` when they were sent: the next pod event ends the expectation
        self.expect_since = -math.inf
        self.refusal: refusals.PodRefusal | None = None  # the API server's last refusal of our pod, if in a row
        self.refusal_read = False  # whether `refusal` was taken over from the status (first held pass)

    def snapshot(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The Livestream as a plain dict, with the status we know we wrote (the watch may lag)."""
        current = self.written if self.written is not None else dict(body.get("status") or {})
        return {"metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {}), "status": current}

    def observe(self, indexed: model.PodObservation | None) -> model.PodObservation | None:
        """The pod from the index, corrected by our own pod writes until a pod event after them arrives."""
        if self.pod_events != self.expect_events or time.monotonic() - self.expect_since > _EXPECTATION_S:
            self.created = self.deleted_uid = None
        return model.expected_pod(indexed, created=self.created, deleted_uid=self.deleted_uid)

    async def reconcile(self, body: Mapping[str, Any], indexed: model.PodObservation | None) -> float:
        """One observe-decide-act pass; returns the seconds until the next look is due.

        Nothing happens before kopf's finalizer is on the Livestream: a pod created earlier
        would outlive a Livestream deleted at once, and our status patch would fail kopf's
        finalizer patch (a JSON patch tested against the resourceVersion), sending it twice.
        The connector's report is read only once its pod has started (a pod not yet running has
        written nothing), and only a running connector's heartbeats need the periodic resync:
        any other state changes through pod and spec events.
        """
        settings = self.runtime.settings
        self.generation, self.held = generation_of(body), held(body)
        if not self.held:
            return settings.idle_resync_interval_s  # the finalizer's event wakes the loop
        livestream = self.snapshot(body)
        if not self.refusal_read:  # a restarted operator goes on counting where the status says
            self.refusal, self.refusal_read = refusals.from_status(livestream["status"]), True
        pod = self.observe(indexed)
        counts: dict[str, int] | None = None
        if pod is not None and pod.phase != "Pending":
            try:
                self.heartbeat, counts = await self.runtime.store.connector_report(livestream["metadata"]["uid"])
            except stores.StoreUnavailable as exc:
                log.warning("redis unavailable; keeping the last report", extra={"error": str(exc)})
        now = time.time()
        found = lifecycle.assess(livestream, pod, self.heartbeat, now, settings)
        refused = await self.act(livestream, found.action)
        if refused is not None:
            found = lifecycle.refused_create(found, refused, livestream, now)
        wanted = status.desired_status(
            livestream, pod, self.heartbeat, counts, now, settings, assessment=found, refusal=self.refusal
        )
        running = pod is not None and pod.phase == "Running"
        delays = [settings.resync_interval_s if running else settings.idle_resync_interval_s]
        if found.action.requeue_after is not None:
            delays.append(found.action.requeue_after)
        if found.action.do is not Do.NOTHING:
            delays.append(_ERROR_RETRY_S)  # confirm the action took effect even if no event comes
        hold_s = self.status_hold_s(found)
        if hold_s is not None:
            delays.append(hold_s)
        patch = status.status_patch(livestream["status"], wanted) if hold_s is None else {}
        wait = self.last_patch + settings.status_min_interval_s - time.monotonic()
        if patch and status.rate_limited(patch) and wait > 0:
            delays.append(wait)
        elif patch:
            await self.patch(livestream, wanted, patch, disruption=found.disruption)
        if self.row_dirty:
            await self.save_row(livestream, self.written or livestream["status"])
        self.runtime.metrics.observe_phase(self.key, wanted["phase"])
        return max(0.0, min(delays))

    def status_hold_s(self, found: lifecycle.Assessment) -> float | None:
        """None when this pass has news for the status; else how long to hold it back.

        Not news: the pod this pass is creating (unless the assessment says its reason is news:
        an eviction, a restart not yet announced), nor that pod's first echo. A new pod's watch
        event wakes the loop within moments, and the scheduler's verdict (a node, or
        Unschedulable) follows: the status is written once, from that, instead of "creating"
        then "scheduling" then the verdict (two API writes fewer per Livestream). If the
        verdict takes longer than `_SCHEDULER_GRACE_S`, "scheduling" is written after all.
        """
        if found.action.do in _CREATES and not found.news:
            return math.inf  # the pod's own event wakes the loop
        if found.awaiting_scheduler and (waited := time.monotonic() - self.expect_since) < _SCHEDULER_GRACE_S:
            return _SCHEDULER_GRACE_S - waited
        return None

    async def act(self, livestream: Mapping[str, Any], action: lifecycle.Action) -> refusals.PodRefusal | None:
        """Carry out `action`; a pod create the API server refuses (4xx) is returned, not raised."""
        kube, metrics = self.runtime.kube, self.runtime.metrics
        namespace, name = self.key
        if action.do is Do.NOTHING:
            return None
        self.created = self.deleted_uid = None
        self.expect_events, self.expect_since = self.pod_events, time.monotonic()
        if action.do in {Do.DELETE_POD, Do.RECREATE_POD}:
            grace = 0 if action.do is Do.RECREATE_POD else None  # a finished pod has nothing to drain
            if await kube.delete_pod(namespace, model.pod_name(name), uid=action.pod_uid, grace_period_s=grace):
                metrics.pod_actions.labels(action="delete").inc()
                self.deleted_uid = action.pod_uid
        if action.do in {Do.CREATE_POD, Do.RECREATE_POD}:
            wanted = desired.desired_pod(livestream, self.runtime.settings, restarts=action.restarts)
            try:
                created = await kube.create_pod(wanted)
            except k8s.ApiError as exc:
                if not refusals.refuses(exc.status):
                    raise
                return await self.refused(livestream, exc)
            self.refusal = None
            if created is not None:
                metrics.pod_actions.labels(action="create").inc()
            else:  # it exists and the index has not shown it yet: learn it once rather than retry the create
                created = await kube.get_pod(namespace, wanted["metadata"]["name"])
            self.created = model.observe_pod(created) if created is not None else None
        return None

    async def refused(self, livestream: Mapping[str, Any], exc: k8s.ApiError) -> refusals.PodRefusal:
        """Count the refusal, record it as a Warning Event on the Livestream (every one: they back off)."""
        self.refusal = refusals.next_refusal(self.refusal, exc.status, exc.reason, exc.message)
        self.runtime.metrics.pod_actions.labels(action="refused").inc()
        log.warning("the API server refused the connector pod", extra={"livestream": self.key, "error": str(exc)})
        await self.runtime.kube.post_event(
            livestream,
            type_="Warning",
            reason=refusals.POD_REFUSED,
            message=f"the API server refused the connector pod ({exc.status} {self.refusal.api_reason}): {exc.message}",
            component=COMPONENT,
        )
        return self.refusal

    async def patch(
        self, livestream: Mapping[str, Any], wanted: dict[str, Any], patch: Mapping[str, Any], *, disruption: str = ""
    ) -> None:
        namespace, name = self.key
        async with self.runtime.status_writes:
            result = await self.runtime.kube.patch_status(namespace, name, patch)
        if result is None:
            return  # the Livestream is gone; the daemon is about to be stopped
        self.runtime.metrics.status_patches.inc()
        self.written, self.last_patch, self.row_dirty = wanted, time.monotonic(), True
        for event in status.transition_events(livestream["status"], wanted, disruption=disruption):
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


def deleting(body: Mapping[str, Any]) -> bool:
    return (body.get("metadata") or {}).get("deletionTimestamp") is not None


def held(body: Mapping[str, Any]) -> bool:
    """Whether kopf's finalizer is on the Livestream (so a deletion waits for `finalize`)."""
    return model.FINALIZER in ((body.get("metadata") or {}).get("finalizers") or ())


def generation_of(body: Mapping[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("generation") or 0)


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
    """The reconcile loop of one Livestream, until kopf stops it (pause, exit) or the Livestream is deleted.

    `body` is kopf's live view of the Livestream, refreshed on every watch event, so the loop
    sees a `deletionTimestamp` before any handler of that event runs, and stops acting
    (cleaning up is `finalize`'s job). Registered before the first check, so that `finalize`
    either finds the loop and waits for it, or the loop finds the deletion and never acts.
    """
    loop = runtime.loops[key] = LivestreamLoop(runtime, key)
    relay = asyncio.create_task(_relay(stopped, loop.wakeup), name=f"stop-relay {key}")
    try:
        while not stopped and not deleting(body) and not loop.gone:
            loop.wakeup.clear()
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
                async with asyncio.timeout(delay):  # unlike wait_for, no extra task per sleeping loop
                    await loop.wakeup.wait()
    finally:
        relay.cancel()
        runtime.metrics.observe_phase(key, None)
        if runtime.loops.get(key) is loop:
            del runtime.loops[key]
        loop.done.set()


async def finalize(runtime: Runtime, key: Key, body: Mapping[str, Any]) -> None:
    """The Livestream is being deleted: remove its pod and close its row (no garbage collector needed).

    Waits for the Livestream's loop to stop acting first (so it cannot create a pod after
    this deleted it), then retries every `_FINALIZE_RETRY_S` until both are done; kopf keeps
    its finalizer on the Livestream until this returns. Idempotent: a pod already gone and
    a row already closed are success.
    """
    current = dict(body.get("status") or {})
    if (loop := runtime.loops.get(key)) is not None:
        loop.wakeup.set()
        await loop.done.wait()
        current = loop.written if loop.written is not None else current
    namespace, name = key
    livestream = {"metadata": dict(body["metadata"]), "spec": dict(body.get("spec") or {})}
    while True:
        try:
            if await runtime.kube.delete_pod(namespace, model.pod_name(name)):
                runtime.metrics.pod_actions.labels(action="delete").inc()
            await runtime.store.close_row(livestream, current)
            return
        except (k8s.ApiError, aiohttp.ClientError, TimeoutError, stores.StoreUnavailable) as exc:
            log.warning("cleanup after deletion failed; retrying", extra={"livestream": key, "error": repr(exc)})
        await asyncio.sleep(_FINALIZE_RETRY_S)
