"""One pod on the node: its containers' processes, its status, and its graceful deletion.

A pod bound to a node is only removed from the API once that node's agent confirms the
deletion (grace period 0) after stopping the containers, so this worker is what makes
``kubectl delete pod`` and namespace deletion finish on the local cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import httpx

from tiktok_service.kube_rest import ApiError
from tiktok_service_dev.node_agent import env as environment
from tiktok_service_dev.node_agent import status
from tiktok_service_dev.node_agent.container import ContainerRunner, RestartBackoff
from tiktok_service_dev.node_agent.kube import KubeApi, pods_path
from tiktok_service_dev.node_agent.times import parse_time, utc_now

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 30  # spec.terminationGracePeriodSeconds default
_RETRY_S = 1.0  # after a failed API write; the loops end with the pod or the agent
_KILL_WAIT_S = 10.0  # SIGKILLed processes exit at once; this only bounds a pathological wait


@dataclass(frozen=True)
class PodContext:
    """What every pod worker shares with the agent."""

    api: KubeApi
    node: environment.NodeResources
    base_env: Mapping[str, str]
    backoff: RestartBackoff
    pods_dir: Path
    logs_dir: Path
    # Grace for pods force-deleted from the API and for all pods when the agent stops.
    abrupt_grace_s: float = 2.0


class End(Enum):
    DELETING = "deleting"  # deletionTimestamp set: stop gracefully, then confirm the deletion
    VANISHED = "vanished"  # gone from the API (force-deleted): just stop the processes
    SHUTDOWN = "shutdown"  # the agent is stopping: like a node going down


def log_path(logs_dir: Path, namespace: str, pod: str, container: str) -> Path:
    return logs_dir / namespace / pod / f"{container}.log"


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def grace_seconds(pod: Mapping[str, Any]) -> float:
    """The deletion's grace period if one was requested, else the pod's own."""
    metadata = pod.get("metadata") or {}
    value = metadata.get("deletionGracePeriodSeconds")
    if value is None:
        value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return float(DEFAULT_GRACE_S if value is None else value)


class PodWorker:
    """Owns one pod (by uid) from first sight until it is gone from the node."""

    def __init__(self, pod: dict[str, Any], context: PodContext) -> None:
        metadata = pod["metadata"]
        self.uid = str(metadata["uid"])
        self.namespace = str(metadata.get("namespace") or "default")
        self.name = str(metadata["name"])
        self._pod = pod
        self._context = context
        self._cwd = context.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"
        self._active = not is_terminal(pod)
        self._start_time = parse_time((pod.get("status") or {}).get("startTime")) or utc_now()
        self._conditions: list[dict[str, Any]] = list((pod.get("status") or {}).get("conditions") or [])
        self._last_written: dict[str, Any] | None = None
        self._final = False
        self._dirty = asyncio.Event()
        self._ended = asyncio.Event()
        self._grace_changed = asyncio.Event()
        self._end: End | None = None
        self._write_lock = asyncio.Lock()
        self._runners = self._make_runners(pod) if self._active else []
        self.update(pod)

    # -- signals from the agent ------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod from the watch."""
        self._pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._finish(End.DELETING)

    def vanished(self) -> None:
        self._finish(End.VANISHED)

    def shutdown(self) -> None:
        self._finish(End.SHUTDOWN)

    def _finish(self, end: End) -> None:
        # A later, more abrupt end overrides a graceful deletion (force delete, agent stop).
        if self._end is None or (self._end is End.DELETING and end is not End.DELETING):
            self._end = end
        self._ended.set()
        self._grace_changed.set()

    # -- the pod's life ----------------------------------------------------------------------

    async def run(self) -> None:
        if self._active:
            self._cwd.mkdir(parents=True, exist_ok=True)
        try:
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self._write_statuses())
                runners = [group.create_task(runner.run()) for runner in self._runners]
                self._dirty.set()
                await self._until_ended_or(runners)
                if not self._ended.is_set():
                    await self._ended.wait()  # containers are done for good; the pod lingers until deleted
                await self._terminate(runners)
                writer.cancel()
                if self._end is End.DELETING:
                    await self._confirm_deletion()
        finally:
            if self._end is not End.SHUTDOWN:
                shutil.rmtree(self._cwd, ignore_errors=True)

    async def _until_ended_or(self, runners: list[asyncio.Task[None]]) -> None:
        """Wait until the pod must end or every container is done for good."""
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            while not ended.done() and not all(r.done() for r in runners):
                pending = [r for r in runners if not r.done()]
                await asyncio.wait([ended, *pending], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()

    async def _terminate(self, runners: list[asyncio.Task[None]]) -> None:
        """SIGTERM, wait out the (possibly shrinking) grace period, SIGKILL the rest."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        for runner in self._runners:
            runner.request_stop(signal.SIGTERM)
        while runners and not all(r.done() for r in runners):
            remaining = began + self._grace() - loop.time()
            if remaining <= 0:
                break
            self._grace_changed.clear()
            changed = asyncio.ensure_future(self._grace_changed.wait())
            pending = [r for r in runners if not r.done()]
            await asyncio.wait([changed, *pending], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        for runner in self._runners:
            if runner.pid is not None:
                log.info("pod %s/%s: SIGKILL container %s after grace period", self.namespace, self.name, runner.name)
            runner.request_stop(signal.SIGKILL)
        if runners:
            await asyncio.wait(runners, timeout=_KILL_WAIT_S)

    def _grace(self) -> float:
        if self._end is End.DELETING:
            return grace_seconds(self._pod)
        return min(grace_seconds(self._pod), self._context.abrupt_grace_s)

    async def _confirm_deletion(self) -> None:
        """Final status, then DELETE with grace 0 and a uid precondition, as a kubelet does."""
        if self._active:
            self._final = True
            with contextlib.suppress(ApiError, httpx.HTTPError):
                await self._write_status()
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        while self._end is End.DELETING:
            try:
                await self._context.api.delete(pods_path(self.namespace, self.name), options)
                log.info("pod %s/%s: deletion confirmed", self.namespace, self.name)
                return
            except ApiError as exc:
                if exc.status in (404, 409):  # already gone, or the name now belongs to a new pod
                    return
                log.warning("pod %s/%s: confirming deletion failed: %s", self.namespace, self.name, exc)
            except httpx.HTTPError as exc:
                log.warning("pod %s/%s: confirming deletion failed: %r", self.namespace, self.name, exc)
            await asyncio.sleep(_RETRY_S)

    # -- status ------------------------------------------------------------------------------

    async def _write_statuses(self) -> None:
        """Coalesce observation changes into status patches; retry failed writes."""
        while self._end in (None, End.DELETING):
            await self._dirty.wait()
            self._dirty.clear()
            if self._end not in (None, End.DELETING):
                return  # vanished pods cannot be written; a stopping agent is a node going away
            try:
                await self._write_status()
            except ApiError as exc:
                if exc.status in (404, 409):
                    return  # the pod (with this uid) is gone
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, exc)
                await asyncio.sleep(_RETRY_S)
                self._dirty.set()
            except httpx.HTTPError as exc:
                log.warning("pod %s/%s: status update failed: %r", self.namespace, self.name, exc)
                await asyncio.sleep(_RETRY_S)
                self._dirty.set()

    async def _write_status(self) -> None:
        if not self._active:
            return
        async with self._write_lock:
            now = utc_now()
            observations = {runner.name: runner.observation for runner in self._runners}
            if self._final:
                observations = {name: status.finalized(o, now=now) for name, o in observations.items()}
            body = status.pod_status(
                self._pod,
                observations,
                start_time=self._start_time,
                now=now,
                terminal=self._final,
                previous_conditions=self._conditions,
            )
            if body == self._last_written:
                return
            patch = {"metadata": {"uid": self.uid}, "status": body}
            await self._context.api.merge_patch(pods_path(self.namespace, self.name) + "/status", patch)
            self._last_written = body
            self._conditions = body["conditions"]

    # -- containers --------------------------------------------------------------------------

    def _make_runners(self, pod: Mapping[str, Any]) -> list[ContainerRunner]:
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        previous = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        runners = []
        for container in spec.get("containers") or []:
            initial, run = status.adopted(previous.get(container["name"]), policy, now=utc_now())
            runners.append(
                ContainerRunner(
                    container,
                    pod_key=(self.namespace, self.name, self.uid),
                    restart_policy=policy,
                    environment_for=self._environment_for,
                    cwd=self._cwd,
                    log_path=log_path(self._context.logs_dir, self.namespace, self.name, container["name"]),
                    backoff=self._context.backoff,
                    on_change=self._dirty.set,
                    initial=initial,
                    run=run,
                )
            )
        return runners

    async def _environment_for(self, container: Mapping[str, Any]) -> dict[str, str]:
        references = environment.references(container)
        secrets = {name: await self._source("secrets", name) for name in sorted(references.secrets)}
        config_maps = {name: await self._source("configmaps", name) for name in sorted(references.config_maps)}
        return environment.resolve(
            self._pod,
            container,
            secrets=secrets,
            config_maps=config_maps,
            node=self._context.node,
            base=self._context.base_env,
        )

    async def _source(self, kind: str, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret or ConfigMap; None if it does not exist."""
        try:
            obj = await self._context.api.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise environment.ConfigError(f"cannot read {kind} {name}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise environment.ConfigError(f"cannot read {kind} {name}: {exc!r}") from exc
        data: dict[str, str] = {}
        encoded = obj.get("data") or {} if kind == "secrets" else obj.get("binaryData") or {}
        for key, value in encoded.items():
            data[key] = base64.b64decode(value).decode("utf-8", errors="surrogateescape")
        if kind == "configmaps":
            data.update(obj.get("data") or {})
        return data
