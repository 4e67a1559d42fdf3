"""The node agent: a kubelet stand-in that runs pods as local processes (dev and tests only).

It registers a Node, keeps it alive (Lease + Ready heartbeat), watches the pods bound to
it and hands each to a ``PodWorker``. It runs on its own asyncio loop, either in the
caller's (``await agent.run()``, the CLI) or in a background thread (``agent.start()`` /
``agent.stop()``, pytest fixtures). Stopping kills every process it started, like a
node shutting down; the pods stay in the API, as they would if a node vanished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from tiktok_service.kube_rest import ApiError
from tiktok_service_dev import event_loops
from tiktok_service_dev.node_agent import node as nodes
from tiktok_service_dev.node_agent.container import RestartBackoff
from tiktok_service_dev.node_agent.env import NodeResources
from tiktok_service_dev.node_agent.kube import KubeApi, WatchHandle
from tiktok_service_dev.node_agent.pod import PodContext, PodWorker, is_terminal, log_path
from tiktok_service_dev.node_agent.times import utc_now

log = logging.getLogger(__name__)

# Host variables a process reasonably needs; everything else comes from the pod spec, so a
# developer's shell (with its CONNECTOR_* settings) does not leak into "containers".
_HOST_VARIABLES = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")
_RETRY_S = 0.5
_POLL_S = 0.05
_STOP_JOIN_S = 30.0
_NOT_READY_TIMEOUT_S = 5.0


class NodeAgentError(RuntimeError):
    """The agent could not register its node, or it crashed (see ``__cause__``)."""


def host_environment(bin_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Base environment of every process: a few host variables and PATH with ``bin_dir`` first."""
    environ = os.environ if environ is None else environ
    base = {name: environ[name] for name in _HOST_VARIABLES if name in environ}
    base["PATH"] = os.pathsep.join([str(bin_dir), environ.get("PATH") or os.defpath])
    return base


class NodeAgent:
    """Registers ``node_name`` and runs the pods the scheduler binds to it as processes.

    Usage in tests::

        with NodeAgent(cp.kubeconfig_path, "node-a", crash_backoff_base_s=0.2) as agent:
            ...  # pods scheduled to node-a run; agent.log_path(ns, pod, container) has output
    """

    def __init__(
        self,
        kubeconfig: Path,
        node_name: str,
        *,
        capacity_cpu: str = "4",
        capacity_memory: str = "8Gi",
        max_pods: int = 110,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        work_dir: Path | None = None,
        python_bin_dir: Path | None = None,
        base_env: Mapping[str, str] | None = None,
        heartbeat_interval_s: float = 10.0,
        lease_duration_s: int = 40,
        crash_backoff_base_s: float = 10.0,
        crash_backoff_cap_s: float = 300.0,
        config_retry_s: float = 1.0,
        watch_timeout_s: int = 300,
        stop_grace_s: float = 2.0,
        mark_not_ready_on_stop: bool = True,
        startup_timeout_s: float = 30.0,
        schedulable_timeout_s: float = 10.0,
        kubelet_version: str = "v0.0.0-node-agent",
    ) -> None:
        """Configure only; nothing is contacted or started until ``start``/``run``.

        ``heartbeat_interval_s``: Lease renewal and Ready heartbeat period (kubelet: 10 s;
        the node-lifecycle controller waits 40 s). ``crash_backoff_*``: restart back-off
        (kubelet: 10 s doubling to 300 s). ``stop_grace_s``: SIGTERM-to-SIGKILL time for
        processes when the agent stops or a pod is force-deleted. ``python_bin_dir``
        (default: this interpreter's, i.e. the venv's ``bin``) leads the processes' PATH.
        """
        self._kubeconfig = kubeconfig
        self._shape = nodes.NodeShape(
            name=node_name,
            cpu=capacity_cpu,
            memory=capacity_memory,
            pods=max_pods,
            labels=dict(labels or {}),
            taints=[dict(t) for t in taints],
            kubelet_version=kubelet_version,
        )
        self._given_work_dir = work_dir
        self._work_dir: Path | None = work_dir
        bin_dir = python_bin_dir or Path(sys.executable).parent
        self._base_env = dict(base_env) if base_env is not None else host_environment(bin_dir)
        self._heartbeat_interval_s = heartbeat_interval_s
        self._lease_duration_s = lease_duration_s
        self._backoff = RestartBackoff(
            base_s=crash_backoff_base_s, cap_s=crash_backoff_cap_s, config_retry_s=config_retry_s
        )
        self._watch_timeout_s = watch_timeout_s
        self._stop_grace_s = stop_grace_s
        self._mark_not_ready_on_stop = mark_not_ready_on_stop
        self._startup_timeout_s = startup_timeout_s
        self._schedulable_timeout_s = schedulable_timeout_s

        self._workers: dict[str, PodWorker] = {}
        self._node_uid = ""
        self._ready_since: datetime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = WatchHandle()  # the pod watch, to end it on stop
        self._error: BaseException | None = None

    # -- accessors -------------------------------------------------------------------------

    @property
    def node_name(self) -> str:
        return self._shape.name

    @property
    def work_dir(self) -> Path:
        """Per-pod working directories (``pods/``) and container logs (``logs/``)."""
        if self._work_dir is None:
            raise NodeAgentError("the agent has not started")
        return self._work_dir

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """Where a container's stdout+stderr go (appended across restarts)."""
        return log_path(self.work_dir / "logs", namespace, pod, container)

    # -- lifecycle in a background thread ------------------------------------------------------

    def start(self) -> Self:
        """Run the agent in a thread; return once the node is Ready and schedulable."""
        if self._thread is not None:
            raise NodeAgentError("the agent was already started")
        self._thread = threading.Thread(target=self._thread_main, name=f"node-agent-{self.node_name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s + self._schedulable_timeout_s + 5.0
        while not self._ready.wait(_POLL_S) and self._thread.is_alive() and time.monotonic() < deadline:
            pass
        if not self._ready.is_set():
            error = self._error
            self.stop()
            raise NodeAgentError(f"node {self.node_name} did not become ready") from error
        return self

    def stop(self) -> None:
        """Stop promptly: kill every process (SIGTERM, ``stop_grace_s``, SIGKILL). Idempotent.

        Raises ``NodeAgentError`` if the agent had crashed, so a test cannot miss it.
        """
        self.request_stop()
        if self._thread is not None:
            self._thread.join(_STOP_JOIN_S)
            if self._thread.is_alive():
                raise NodeAgentError(f"node agent {self.node_name} did not stop within {_STOP_JOIN_S:.0f}s")
        error, self._error = self._error, None
        if error is not None and self._ready.is_set():
            raise NodeAgentError(f"node agent {self.node_name} crashed") from error

    def request_stop(self) -> None:
        """Ask the agent to stop, from any thread or a signal handler; does not wait."""
        self._stop_requested.set()
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing to stop
                loop.call_soon_threadsafe(event.set)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            event_loops.run(self.run())  # no API server connection outlives the thread's loop
        except BaseException as exc:  # reported by start()/stop() in the caller's thread
            log.exception("node agent %s failed", self.node_name)
            self._error = exc

    # -- the agent ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Register the node, then serve pods until ``request_stop``/``stop``."""
        self._stop_event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():
            self._stop_event.set()
        if self._given_work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix=f"node-agent-{self.node_name}-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        api = KubeApi.from_kubeconfig(self._kubeconfig)
        try:
            if not await self._register(api) or not await self._until_schedulable(api):
                return
            self._ready.set()
            log.info("node %s registered and ready", self.node_name)
            context = PodContext(
                api=api,
                node=NodeResources(cpu=self._shape.cpu, memory=self._shape.memory),
                base_env=self._base_env,
                backoff=self._backoff,
                pods_dir=self.work_dir / "pods",
                logs_dir=self.work_dir / "logs",
                abrupt_grace_s=self._stop_grace_s,
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(self._heartbeat(api))
                group.create_task(self._watch_pods(api, group, context))
                await self._stop_event.wait()
                # No task is cancelled inside a request (see `WatchHandle`): the heartbeat and the
                # watcher see the stop event and end after the request in flight; an open watch
                # is ended by closing its connection.
                await self._watch.abort()
                for worker in self._workers.values():
                    worker.shutdown()
            if self._mark_not_ready_on_stop:
                await self._mark_not_ready(api)
        finally:
            await api.aclose()
            if self._given_work_dir is None:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    async def _register(self, api: KubeApi) -> bool:
        """Create (or adopt) the Node, post its status and Lease; retried until the startup timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout_s
        assert self._stop_event is not None
        while not self._stop_event.is_set():
            try:
                await self._register_once(api)
                return True
            except (ApiError, httpx.HTTPError) as exc:
                if loop.time() > deadline:
                    raise NodeAgentError(f"could not register node {self.node_name}: {exc!r}") from exc
                log.warning("registering node %s failed, retrying: %r", self.node_name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), _RETRY_S)
        return False

    async def _until_schedulable(self, api: KubeApi) -> bool:
        """Wait for the node-lifecycle controller to lift the ``not-ready`` taint.

        The ``TaintNodesByCondition`` admission plugin taints every new node
        ``node.kubernetes.io/not-ready:NoSchedule``; the controller removes it ~0.1 s after
        seeing the node Ready. Declaring the agent ready before that would make pods
        created right away briefly unschedulable. Without a controller-manager the taint
        stays: after ``schedulable_timeout_s`` we go on with a warning rather than fail.
        """
        assert self._stop_event is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._schedulable_timeout_s
        while not self._stop_event.is_set():
            with contextlib.suppress(ApiError, httpx.HTTPError):
                node = await api.get(f"/api/v1/nodes/{self.node_name}")
                if not nodes.lifecycle_taints((node.get("spec") or {}).get("taints") or []):
                    return True
            if loop.time() > deadline:
                log.warning(
                    "node %s still carries the not-ready taint; is kube-controller-manager running?", self.node_name
                )
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), _POLL_S)
        return False

    async def _register_once(self, api: KubeApi) -> None:
        now = utc_now()
        path = f"/api/v1/nodes/{self.node_name}"
        try:
            created = await api.create("/api/v1/nodes", nodes.node_object(self._shape, now=now))
        except ApiError as exc:
            if exc.status != 409:
                raise
            existing = await api.get(path)
            taints = nodes.missing_taints(self._shape, (existing.get("spec") or {}).get("taints") or [])
            created = await api.merge_patch(
                path, {"metadata": {"labels": nodes.node_labels(self._shape)}, "spec": {"taints": taints or None}}
            )
        self._node_uid = str(created["metadata"]["uid"])
        self._ready_since = now
        await self._renew(api)

    async def _heartbeat(self, api: KubeApi) -> None:
        """Renew the Lease and the Ready heartbeat every interval until stopped."""
        assert self._stop_event is not None
        while not self._stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), self._heartbeat_interval_s)
            if self._stop_event.is_set():
                return
            try:
                await self._renew(api)
            except (ApiError, httpx.HTTPError) as exc:
                log.warning("node %s heartbeat failed: %r", self.node_name, exc)

    async def _renew(self, api: KubeApi) -> None:
        now = utc_now()
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{nodes.LEASE_NAMESPACE}/leases"
        spec = nodes.lease_spec(self.node_name, now=now, duration_s=self._lease_duration_s)
        try:
            await api.merge_patch(f"{lease_path}/{self.node_name}", {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = nodes.lease_object(self.node_name, self._node_uid, now=now, duration_s=self._lease_duration_s)
            await api.create(lease_path, lease)
        status = nodes.node_status(self._shape, now=now, ready_since=self._ready_since or now)
        await api.merge_patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status})

    async def _mark_not_ready(self, api: KubeApi) -> None:
        """Tell the control plane at once that this node is gone (else it notices after ~40 s)."""
        now = utc_now()
        status = nodes.node_status(
            self._shape, now=now, ready_since=now, ready=False, message="local node agent stopped"
        )
        try:
            await asyncio.wait_for(
                api.merge_patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status}), _NOT_READY_TIMEOUT_S
            )
        except (ApiError, httpx.HTTPError, TimeoutError) as exc:
            log.warning("could not mark node %s NotReady: %r", self.node_name, exc)

    # -- pods ----------------------------------------------------------------------------------

    async def _watch_pods(self, api: KubeApi, group: asyncio.TaskGroup, context: PodContext) -> None:
        """List+watch pods bound to this node; reconnect on timeout, relist on 410 Gone."""
        assert self._stop_event is not None
        params = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        resource_version: str | None = None
        while not self._stop_event.is_set():
            try:
                if resource_version is None:
                    listing = await api.get("/api/v1/pods", params)
                    self._relist(listing.get("items") or [], group, context)
                    resource_version = str(listing["metadata"]["resourceVersion"])
                if self._stop_event.is_set():
                    return
                events = api.watch(
                    "/api/v1/pods",
                    {**params, "resourceVersion": resource_version},
                    timeout_s=self._watch_timeout_s,
                    handle=self._watch,
                )
                async with contextlib.aclosing(events):
                    async for event in events:
                        if self._stop_event.is_set():
                            return
                        pod: dict[str, Any] = event["object"]
                        resource_version = str(pod["metadata"].get("resourceVersion") or resource_version)
                        if event["type"] == "DELETED":
                            self._forget(str(pod["metadata"]["uid"]))
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self._observe(pod, group, context)
            except ApiError as exc:
                if exc.status == 410:
                    resource_version = None  # too old: relist
                    continue
                log.warning("watching pods of node %s failed: %s", self.node_name, exc)
                await asyncio.sleep(_RETRY_S)
            except httpx.HTTPError as exc:
                if self._stop_event.is_set():
                    return  # the watch was ended by `stop`
                log.warning("watching pods of node %s failed: %r", self.node_name, exc)
                await asyncio.sleep(_RETRY_S)

    def _relist(self, pods: list[dict[str, Any]], group: asyncio.TaskGroup, context: PodContext) -> None:
        present = {str(pod["metadata"]["uid"]) for pod in pods}
        for uid in [uid for uid in self._workers if uid not in present]:
            self._forget(uid)
        for pod in pods:
            self._observe(pod, group, context)

    def _observe(self, pod: dict[str, Any], group: asyncio.TaskGroup, context: PodContext) -> None:
        uid = str(pod["metadata"]["uid"])
        worker = self._workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        if is_terminal(pod) and not pod["metadata"].get("deletionTimestamp"):
            return  # finished before we saw it (e.g. by a previous agent): nothing to run
        worker = PodWorker(pod, context)
        self._workers[uid] = worker
        group.create_task(worker.run(), name=f"pod {worker.namespace}/{worker.name}")

    def _forget(self, uid: str) -> None:
        """The pod left the API: stop its processes (if any) and stop tracking it."""
        worker = self._workers.pop(uid, None)
        if worker is not None:
            worker.vanished()
