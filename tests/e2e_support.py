"""Helpers for the end-to-end tests (`tests/integration/test_e2e_*.py`).

Those tests are synchronous: the `kubernetes` client, the node agents and the operator all
block or run in their own threads. The asyncio services a test talks to (the simulator,
the persister, PostgreSQL queries) run on a `BackgroundLoop`, an event loop in its own
thread, so they keep serving the connector processes while a test waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import asyncpg
import pytest
import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kubelet_support import (
    KubeletNode,
    NodeUnavailableError,
    build_product_image,
    node_build,
    node_prerequisites,
    qualified_image,
)
from tiktok_service.database import livestreams_repository as repo
from tiktok_service.database.migrate import migrate
from tiktok_service.operator import model
from tiktok_service.settings import PersisterSettings
from tiktok_service_dev import event_loops, operator_harness, persister_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.node_agent import NodeAgent
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.config import SimulatorConfig
from tiktok_service_dev.simulator.room import Room
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer
from tiktok_service_dev.simulator.tiktok_routes import fault_counts

T = TypeVar("T")

DEADLINE_S: Final = 60.0
NODE_KINDS: Final = ("node-agent", "kubelet")
IMAGE: Final = os.environ.get("TEST_IMAGE", "tiktok-service:test")
_POLL_S: Final = 0.1
_LOG_TAIL_LINES: Final = 40


class BackgroundLoop:
    """An asyncio event loop in a daemon thread; `run(coro)` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = event_loops.TrackingLoop()
        self._thread = threading.Thread(target=self._main, name="e2e-services", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DEADLINE_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function: Callable[[], T], timeout: float = DEADLINE_S) -> T:
        """`function()` on the loop's thread (for objects that only that loop may touch)."""

        async def invoke() -> T:
            return function()

        return self.run(invoke(), timeout)

    def close(self) -> None:
        """Cancel what still runs, close every connection (see `event_loops`), then the loop."""
        try:
            self.run(event_loops.finish(self.loop))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(DEADLINE_S)
            self.loop.close()


class Background:
    """A long-running coroutine on a `BackgroundLoop` (e.g. a persister), stopped on request."""

    def __init__(self, bg: BackgroundLoop, serve: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._bg = bg
        self._stop = asyncio.Event()
        self._future = asyncio.run_coroutine_threadsafe(serve(self._stop), bg.loop)

    def stop(self, timeout: float = DEADLINE_S) -> None:
        self._bg.loop.call_soon_threadsafe(self._stop.set)
        self._future.result(timeout)  # re-raises what killed it, if anything did


def wait_for(
    condition: Callable[[], T], *, what: str, timeout: float = DEADLINE_S, explain: Callable[[], str] | None = None
) -> T:
    """Poll until `condition()` is truthy and return it; fail naming `what` (and `explain()`) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            details = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{details}")
        time.sleep(_POLL_S)


def connector_bin_dir(root: Path, venv_bin: Path) -> Path:
    """A bin dir whose `tiktok-service` is the venv's, run with the connector's HTTP port off.

    On Kubernetes every pod has its own network namespace, so every connector listens on
    :8080 (`CONNECTOR_HTTP_PORT` set by the operator). The local node agent runs all pods in
    the host's namespace, where a second connector could not bind :8080 and would exit 1.
    The agent puts this dir first on the pods' PATH; the connector itself runs unchanged.
    """
    root.mkdir(parents=True, exist_ok=True)
    script = root / "tiktok-service"
    script.write_text(
        "#!/bin/sh\n"
        "# Pods of the local node agent share the host network: no fixed health port.\n"
        "export CONNECTOR_HTTP_PORT=0\n"
        f'exec "{venv_bin / "tiktok-service"}" "$@"\n'
    )
    script.chmod(0o755)
    return root


def prepared_namespace(admin: client.ApiClient, *, prefix: str, operator_user: str, redis_url: str) -> str:
    """A new namespace as deploy/ prepares it: the operator's Role bound, the connector Secret."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    operator_harness.grant_role(admin, namespace=name, user=operator_user)
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="tiktok-connector"), string_data={"redis-url": redis_url}
    )
    core.create_namespaced_secret(name, secret)
    return name


def livestream(name: str, username: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": name},
        "spec": {"username": username, **spec},
    }


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


class Node(Protocol):
    """A node the tests run pods on (the local node agent or a real kubelet): where its logs are."""

    @property
    def node_name(self) -> str: ...

    def log_path(self, namespace: str, pod: str, container: str) -> Path: ...


class Cluster:
    """The test's view of one namespace: Livestreams, their pods, and what to print when stuck."""

    def __init__(self, api: client.ApiClient, namespace: str, agents: Sequence[Node]) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.agents = agents  # every node running now (for connector logs)

    # -- Livestreams -------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            model.GROUP, model.VERSION, self.namespace, model.PLURAL, body
        )

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
                model.GROUP, model.VERSION, self.namespace, model.PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str) -> dict[str, Any]:
        found = self.get(name)
        return dict((found or {}).get("status") or {})

    def phase(self, name: str) -> str | None:
        return self.status(name).get("phase")

    def in_phase(self, name: str, phase: str, **fields: Any) -> dict[str, Any] | None:
        """The status when it shows `phase` (and each of `fields`), else None (for `wait_for`)."""
        status = self.status(name)
        if status.get("phase") != phase or any(status.get(key) != value for key, value in fields.items()):
            return None
        return status

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            model.GROUP, model.VERSION, self.namespace, model.PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, self.namespace, model.PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def gone(self, name: str) -> bool:
        """Neither the Livestream nor its pod exists any more."""
        return not self.pods(name) and self.get(name) is None

    def events(self, name: str) -> list[str]:
        found = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
        return [event.reason for event in found.items]

    # -- pods ----------------------------------------------------------------------------------

    def pods(self, name: str) -> list[client.V1Pod]:
        """Every connector pod of the Livestream `name` (there must never be more than one)."""
        selector = f"{model.LABEL_LIVESTREAM}={model.label_value(name)}"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def pod(self, name: str) -> client.V1Pod | None:
        pods = self.pods(name)
        assert len(pods) <= 1, f"{len(pods)} connector pods for {name}"
        return pods[0] if pods else None

    def running_pod(self, name: str, *, other_than: str | None = None) -> client.V1Pod | None:
        """The pod once its connector process runs (a `local://<pid>` container id); not `other_than` (a uid)."""
        pod = self.pod(name)
        state = container_status(pod)
        if pod is None or state is None or state.state.running is None or not state.container_id:
            return None
        return pod if pod.metadata.uid != other_than else None

    def delete_pod(self, pod: client.V1Pod) -> None:
        self.core.delete_namespaced_pod(pod.metadata.name, self.namespace)

    # -- diagnosis ---------------------------------------------------------------------------

    def connector_log(self, name: str) -> str:
        pod_name = model.pod_name(name)
        for agent in self.agents:
            path = agent.log_path(self.namespace, pod_name, model.CONTAINER)
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
                return f"connector log on {agent.node_name} ({path}):\n" + "\n".join(lines)
        return f"no connector log for {pod_name} on {[agent.node_name for agent in self.agents]}"

    def explain(self, *names: str) -> Callable[[], str]:
        """Failure details: each Livestream's status, its pod's status and its connector's log."""

        def details() -> str:
            parts = []
            for name in names:
                pod = next(iter(self.pods(name)), None)
                pod_state = pod.status.to_dict() if pod is not None and pod.status is not None else None
                parts.append(
                    f"--- livestream {self.namespace}/{name}\n"
                    f"status: {json.dumps(self.status(name), indent=1, default=str)}\n"
                    f"pod: {pod.metadata.name if pod else None} on {pod.spec.node_name if pod else None}: "
                    f"{json.dumps(pod_state, default=str)}\n"
                    f"{self.connector_log(name)}"
                )
            return "\n".join(parts)

        return details


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = DEADLINE_S, **fields: Any) -> dict[str, Any]:
    """The Livestream's status once it shows `phase` (and each of `fields`); at the deadline, fail
    with its status, its pod's and its connector's log."""
    return wait_for(
        functools.partial(cluster.in_phase, name, phase, **fields),
        what=f"{name} to be {phase} {fields or ''}",
        timeout=timeout,
        explain=cluster.explain(name),
    )


def container_status(pod: client.V1Pod | None) -> client.V1ContainerStatus | None:
    if pod is None or pod.status is None or not pod.status.container_statuses:
        return None
    status: client.V1ContainerStatus = pod.status.container_statuses[0]
    return status


def pid_of(pod: client.V1Pod) -> int:
    state = container_status(pod)
    assert state is not None and state.container_id.startswith("local://"), state
    return int(state.container_id.removeprefix("local://"))


def exit_of(cluster: Cluster, name: str) -> client.V1ContainerStateTerminated:
    """The connector's exit, once its node reported it.

    A kubelet reports an exit a few seconds after the connector's own last status (which goes
    through Redis), so the pod may still show the container running when the phase has changed.
    """

    def terminated() -> client.V1ContainerStateTerminated | None:
        state = container_status(cluster.pod(name))
        return state.state.terminated if state is not None else None

    return wait_for(terminated, what=f"the exit of {name}'s connector", explain=cluster.explain(name))


# -- nodes ---------------------------------------------------------------------------------------


def node_kind_or_skip(kind: str) -> str:
    """A module's `node_kind` parameter (one of `NODE_KINDS`); a kubelet run is skipped, with the
    reason, where no real node can start (not root, containerd missing)."""
    if kind == "kubelet" and (reason := node_prerequisites()) is not None:
        pytest.skip(reason)
    return kind


@functools.cache
def product_image(image: str = IMAGE) -> str:
    """The product image, built once per test session (its name in podman's storage and containerd)."""
    return build_product_image(image)


@contextlib.contextmanager
def kubelet_node(
    control_plane: ControlPlane, name: str, *, image: str | None = IMAGE, cluster_dns: str | None = None
) -> Iterator[KubeletNode]:
    """A Ready real node called `name` (kubelet + containerd + runc) with the product image `image`
    (built once per session) imported; `image=None` imports none (the caller brings its own).
    `cluster_dns`: the nameserver the kubelet gives pods. Without a kubelet build the test fails
    saying how to make one."""
    built = product_image(image) if image is not None else None
    try:
        node = KubeletNode(control_plane, name, build=node_build(), cluster_dns=cluster_dns)
    except NodeUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    with node:
        assert node.containerd is not None
        if built is not None:
            node.containerd.import_from_podman(built)
        yield node


@contextlib.contextmanager
def node_agent(control_plane: ControlPlane, name: str, *, bin_dir: Path, work_dir: Path) -> Iterator[NodeAgent]:
    """A Ready node of the kind `make dev` runs, called `name`: pods as processes of the venv's
    `tiktok-service` from `bin_dir`, their logs under `work_dir` (kept after the run)."""
    agent = NodeAgent(
        control_plane.kubeconfig_path,
        name,
        python_bin_dir=bin_dir,
        work_dir=work_dir,
        heartbeat_interval_s=2.0,
        stop_grace_s=1.0,
    )
    with agent:
        yield agent


@contextlib.contextmanager
def started_node(
    kind: str, control_plane: ControlPlane, name: str, *, bin_dir: Path, work_dir: Path, image: str = IMAGE
) -> Iterator[NodeAgent | KubeletNode]:
    """A Ready node called `name` of `kind` (one of `NODE_KINDS`): `node_agent` or `kubelet_node`."""
    if kind == "kubelet":
        with kubelet_node(control_plane, name, image=image) as node:
            yield node
        return
    with node_agent(control_plane, name, bin_dir=bin_dir, work_dir=work_dir) as agent:
        yield agent


def pods_host(node: Node) -> str:
    """The address services must listen on for the node's pods to reach them."""
    return node.ip if isinstance(node, KubeletNode) else "127.0.0.1"


def connector_image_settings(node: Node, image: str = IMAGE) -> dict[str, Any]:
    """Operator settings for the node's pods: on a real node the product image, imported (never pulled)."""
    if isinstance(node, KubeletNode):
        return {"connector_image": qualified_image(image), "connector_image_pull_policy": "Never"}
    return {}


@contextlib.contextmanager
def pods_redis(node: Node, shared: LocalRedis) -> Iterator[LocalRedis]:
    """The Redis the node's pods reach: the session's own for processes of this machine; a server of
    its own on a real node's address (a pod's network namespace does not reach loopback)."""
    if not isinstance(node, KubeletNode):
        if not shared.running:
            shared.start()
        yield shared
        return
    with LocalRedis(host=node.ip) as server:
        yield server


class Livestreams:
    """Livestreams a test created: printed (shown by pytest when the test fails) and deleted after it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.names: list[str] = []

    def create(self, name: str, username: str, **spec: Any) -> dict[str, Any]:
        self.names.append(name)
        return self.cluster.create(livestream(name, username, **spec))

    def adopt(self, name: str) -> None:
        """Track one created by other means (kubectl)."""
        self.names.append(name)

    def delete_all(self, timeout: float = DEADLINE_S) -> None:
        """Print their state (pytest shows it if the test failed), delete them, wait for their pods to go."""
        self.report()
        names, self.names = self.names, []
        for name in names:
            self.cluster.delete(name)
        for name in names:
            wait_for(
                functools.partial(self.cluster.gone, name),
                what=f"livestream {name} and its pod to be gone",
                timeout=timeout,
                explain=self.cluster.explain(name),
            )

    def report(self) -> None:
        if self.names:
            print(self.cluster.explain(*self.names)())


@dataclass
class Services:
    """What the connectors talk to and where their events land, shared by an e2e module."""

    bg: BackgroundLoop
    simulator: SimulatorServer
    redis_url: str
    database_url: str

    def add_room(self, username: str, scenario: Scenario) -> Room:
        return self.bg.run(self.simulator.add_room(username, scenario))

    def sent(self, username: str) -> list[dict[str, Any]]:
        """What the room sent so far (rooms are read on the simulator's own loop)."""
        return list(self.bg.call(lambda: self.simulator.room(username).sent_json()["messages"]))

    def stats(self, username: str) -> dict[str, Any]:
        return dict(self.bg.call(lambda: self.simulator.room(username).stats_json()))

    def faults(self, username: str) -> dict[str, int]:
        """What the room refused so far (captcha pages, refused handshakes...)."""
        return self.bg.call(lambda: fault_counts(self.simulator.room(username)))

    def events_sent(self, username: str) -> int:
        return int(self.bg.call(lambda: self.simulator.room(username).stats_json()["events_sent"]))

    def room_id(self, username: str) -> int:
        return self.bg.call(lambda: self.simulator.room(username).room_id)

    def end_live(self, username: str) -> bool:
        return self.bg.run(self.simulator.room(username).end_live())

    def row(self, uid: str) -> repo.Livestream | None:
        return self.bg.run(fetch_row(self.database_url, uid))

    def row_status(self, uid: str) -> repo.LivestreamStatus | None:
        row = self.row(uid)
        return row.status if row is not None else None


async def create_database(dsn: str, name: str) -> str:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = dsn.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    return url


async def serve_persister(settings: PersisterSettings, stop: asyncio.Event) -> None:
    """The persister until `stop` is set (a `Background` service)."""
    async with persister_harness.running(settings, name="e2e"):
        await stop.wait()


@contextlib.contextmanager
def started_services(*, redis_url: str, postgres_dsn: str, host: str = "127.0.0.1") -> Iterator[Services]:
    """A fresh database, the persister and the simulator (on a free port of `host`, where pods reach it).

    Redis (at `redis_url`) is flushed first: stale streams of earlier modules would flow into this database.
    """
    flusher = redis.Redis.from_url(redis_url)
    flusher.flushall()
    flusher.close()
    bg = BackgroundLoop()
    try:
        database_url = bg.run(create_database(postgres_dsn, f"e2e_{uuid.uuid4().hex[:8]}"))
        simulator = SimulatorServer(SimulatorConfig(host=host, port=0))
        bg.run(simulator.start())
        try:
            settings = persister_harness.quick_settings(redis_url, database_url)
            persister = Background(bg, functools.partial(serve_persister, settings))
            try:
                yield Services(bg, simulator, redis_url, database_url)
            finally:
                persister.stop()
        finally:
            bg.run(simulator.stop())
    finally:
        bg.close()


@contextlib.contextmanager
def services_on_node(node: Node, postgres_server: LocalPostgres) -> Iterator[Services]:
    """Redis of its own and `started_services` on the node's address, where its pods reach them."""
    if not postgres_server.running:
        postgres_server.start()
    host = pods_host(node)
    with (
        LocalRedis(host=host) as redis_server,
        started_services(redis_url=redis_server.url, postgres_dsn=postgres_server.dsn, host=host) as running,
    ):
        yield running


# -- PostgreSQL ---------------------------------------------------------------------------------


async def fetch_row(database_url: str, uid: str) -> repo.Livestream | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await repo.get_livestream(conn, uuid.UUID(uid))
    finally:
        await conn.close()


async def stored_events(database_url: str, uid: str) -> list[tuple[str, str]]:
    """(event_id, event_type) of every row of the livestream in `events`."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT event_id, event_type FROM events WHERE livestream_id = $1", uuid.UUID(uid))
    finally:
        await conn.close()
    return [(row["event_id"], row["event_type"]) for row in rows]


def without_markers(events: Iterable[tuple[str, str]]) -> dict[str, str]:
    """id -> type of TikTok-originated events (not the connector's connect/disconnect markers)."""
    return {event_id: kind for event_id, kind in events if kind not in {"tiktok.connect", "tiktok.disconnect"}}
