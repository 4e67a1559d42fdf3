"""The whole product on a real control plane: nothing is faked, nothing is written by hand.

etcd + kube-apiserver + controller-manager + scheduler, a node that runs connector pods (every
scenario runs twice: on the node agent, pods as real `tiktok-service connector` processes, and
on a real kubelet with containerd, pods from the product image: tests/kubelet_support.py),
the operator with a token bound to exactly the deploy/ Role, Redis, PostgreSQL, a persister and the TikTok simulator.
A test only does what a user or the cluster does (apply, delete, pause, end a LIVE, add a
node) and waits for the product to converge.

Everything is shared by the module (one namespace); each test uses its own Livestream names
and TikTok users and deletes its Livestreams when done. When a test fails, pytest shows the
status, pod and connector log of each of its Livestreams (printed at teardown).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client
from kubernetes.utils.quantity import parse_quantity

from tests.cluster_support import started_control_plane
from tests.e2e_support import (
    Cluster,
    Livestreams,
    Node,
    Services,
    connector_bin_dir,
    container_status,
    livestream,
    pid_of,
    prepared_namespace,
    started_services,
    stored_events,
    unique,
    wait_for,
    without_markers,
)
from tests.kubelet_support import (
    KubeletNode,
    NodeUnavailableError,
    build_product_image,
    node_build,
    node_prerequisites,
    qualified_image,
)
from tests.support import expected_events
from tiktok_service.database import livestreams_repository as repo
from tiktok_service.domain import naming
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.operator import model
from tiktok_service.settings import OperatorSettings
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane, binaries_dir
from tiktok_service_dev.node_agent import NodeAgent
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.scenario import Scenario

pytestmark = pytest.mark.slow

OPERATOR_USER = "operator"
MAIN_NODE = "e2e-main"
IMAGE = os.environ.get("TEST_IMAGE", "tiktok-service:test")
VENV_BIN = Path(sys.executable).parent
POOL_LABEL = "e2e.tiktok-service.io/pool"


# -- services -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services(main_node: Node, redis_server: LocalRedis, postgres_server: LocalPostgres) -> Iterator[Services]:
    """Redis, a fresh database, the persister and the simulator (on a real port) for the module.

    On a real node they listen on the node's address, where the pods' network namespaces reach them.
    """
    if not postgres_server.running:
        postgres_server.start()
    with contextlib.ExitStack() as stack:
        host = main_node.ip if isinstance(main_node, KubeletNode) else "127.0.0.1"
        if isinstance(main_node, KubeletNode):
            redis_server = stack.enter_context(LocalRedis(host=host))
        elif not redis_server.running:
            redis_server.start()
        yield stack.enter_context(
            started_services(redis_url=redis_server.url, postgres_dsn=postgres_server.dsn, host=host)
        )


@pytest.fixture(scope="module")
def redis_reader(services: Services) -> Iterator[redis.Redis]:
    reader = redis.Redis.from_url(services.redis_url)
    yield reader
    reader.close()


# -- the cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["node-agent", "kubelet"])
def node_kind(request: pytest.FixtureRequest) -> str:
    """Every scenario runs on the local node agent (pods as processes) and on a real kubelet."""
    kind: str = request.param
    if kind == "kubelet" and (reason := node_prerequisites()) is not None:
        pytest.skip(reason)
    return kind


@pytest.fixture(scope="module")
def control_plane(node_kind: str) -> Iterator[ControlPlane]:
    """A fresh one per node kind: nothing of one run (nodes, pods, events) is seen by the other."""
    with started_control_plane(extra_users=[OPERATOR_USER]) as cp:
        yield cp


@pytest.fixture(scope="module")
def namespace(admin: client.ApiClient, services: Services) -> str:
    return prepared_namespace(admin, prefix="e2e", operator_user=OPERATOR_USER, redis_url=services.redis_url)


@pytest.fixture(scope="module")
def connector_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return connector_bin_dir(tmp_path_factory.mktemp("connector-bin"), VENV_BIN)


@pytest.fixture(scope="module")
def agents(node_kind: str) -> list[Node]:
    """The nodes running now (where connector logs are looked up)."""
    return []


def node_agent(cp: ControlPlane, name: str, bin_dir: Path, work_dir: Path, **shape: Any) -> NodeAgent:
    return NodeAgent(
        cp.kubeconfig_path,
        name,
        python_bin_dir=bin_dir,
        work_dir=work_dir,  # kept after the run: the connectors' logs
        heartbeat_interval_s=2.0,
        stop_grace_s=1.0,
        **shape,
    )


@pytest.fixture(scope="module")
def main_node(
    node_kind: str,
    control_plane: ControlPlane,
    connector_bin: Path,
    agents: list[Node],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    node: NodeAgent | KubeletNode
    if node_kind == "kubelet":
        image = build_product_image(IMAGE)
        try:
            node = KubeletNode(control_plane, MAIN_NODE, build=node_build())
        except NodeUnavailableError as exc:
            pytest.fail(str(exc), pytrace=False)
    else:
        node = node_agent(control_plane, MAIN_NODE, connector_bin, tmp_path_factory.mktemp(MAIN_NODE))
    with node:
        if isinstance(node, KubeletNode):
            assert node.containerd is not None
            node.containerd.import_from_podman(image)
        agents.append(node)
        yield node
        agents.remove(node)


@pytest.fixture(scope="module")
def operator_settings(
    control_plane: ControlPlane, namespace: str, services: Services, main_node: Node
) -> OperatorSettings:
    base_url = services.simulator.base_url
    image: dict[str, Any] = {}
    if isinstance(main_node, KubeletNode):  # pods from the product image, imported into the node
        image = {"connector_image": qualified_image(IMAGE), "connector_image_pull_policy": "Never"}
    return operator_harness.quick_settings(
        kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
        namespace=namespace,
        redis_url=services.redis_url,
        database_url=services.database_url,
        sign_api_url=base_url,
        tiktok_app_url=base_url,
        tiktok_webcast_url=base_url + "/webcast",
        connector_allowed_toleration_keys=[POOL_LABEL],  # the node pools of the scaling test
        **image,
    )


class Operator:
    """The running operator; `stop()` then `start()` is a restart (the new one remembers nothing)."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.thread: operator_harness.OperatorThread | None = operator_harness.OperatorThread(settings).start()

    def stop(self) -> None:
        if self.thread is not None:
            thread, self.thread = self.thread, None
            thread.stop()

    def start(self) -> None:
        assert self.thread is None
        self.thread = operator_harness.OperatorThread(self.settings).start()


@pytest.fixture(scope="module")
def operator(operator_settings: OperatorSettings, main_node: Node) -> Iterator[Operator]:
    running = Operator(operator_settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cluster(admin: client.ApiClient, namespace: str, agents: list[Node], operator: Operator) -> Cluster:
    return Cluster(admin, namespace, agents)


@pytest.fixture
def livestreams(cluster: Cluster) -> Iterator[Livestreams]:
    created = Livestreams(cluster)
    yield created
    created.delete_all()


# -- helpers -------------------------------------------------------------------------------------


def connector_pid(node: Node, pod: client.V1Pod) -> int:
    """The host PID of the pod's connector (a process of the agent, or a container's init)."""
    if isinstance(node, KubeletNode):
        state = container_status(pod)
        assert state is not None and state.container_id
        return node.host_pid(state.container_id)
    return pid_of(pod)


def exit_of(cluster: Cluster, name: str) -> client.V1ContainerStateTerminated:
    """The connector's exit, once its node reported it (the connector may report first, to Redis)."""

    def terminated() -> client.V1ContainerStateTerminated | None:
        state = container_status(cluster.pod(name))
        return state.state.terminated if state is not None else None

    return wait_for(terminated, what=f"the exit of {name}'s connector", explain=cluster.explain(name))


def agent_only(node: Node, why: str) -> None:
    if isinstance(node, KubeletNode):
        pytest.skip(f"node agent only: {why}")


def kubectl(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(binaries_dir() / "kubectl"), f"--kubeconfig={cp.kubeconfig_path}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
    return wait_for(
        partial(cluster.in_phase, name, phase, **fields),
        what=f"{name} to be {phase} {fields or ''}",
        timeout=timeout,
        explain=cluster.explain(name),
    )


def wait_live(cluster: Cluster, name: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_phase(cluster, name, "Live", timeout)


def epoch(value: str | None) -> float:
    parsed = model.parse_time(value)
    assert parsed is not None
    return parsed


def moment(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch(value), tz=dt.UTC) if value else None


def stream_events(reader: redis.Redis, uid: str) -> dict[str, str]:
    entries = reader.xrange(naming.livestream_stream(uid))
    return without_markers((f[naming.FIELD_ID].decode(), f[naming.FIELD_TYPE].decode()) for _, f in entries)


def counts_in_redis(reader: redis.Redis, uid: str) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in reader.hgetall(naming.event_counts_key(uid)).items()}


def row_matches(row: repo.Livestream | None, status: dict[str, Any]) -> bool:
    return (
        row is not None
        and row.status == repo.LivestreamStatus(status["phase"].lower())
        and row.room_id == int(status["roomId"])
        and row.viewer_count == status.get("viewerCount")
        and row.event_counts == status.get("eventCounts")
        and row.connected_at == moment(status.get("connectedAt"))
        and row.last_event_at == moment(status.get("lastEventAt"))
    )


# -- tests ---------------------------------------------------------------------------------------


def test_a_livestream_applied_with_kubectl_streams_real_events_into_redis_postgresql_and_its_status(
    control_plane: ControlPlane,
    cluster: Cluster,
    services: Services,
    operator_settings: OperatorSettings,
    livestreams: Livestreams,
    redis_reader: redis.Redis,
    tmp_path: Path,
) -> None:
    name, username = "applied", unique("applied_")
    # No gifts: a streak left open by the last event is only closed after 60 s of silence
    # (the data plane test covers streaks); every other kind, viewer counts included, is sent.
    mix = {"comment": 40, "like": 20, "join": 15, "follow": 5, "share": 5, "viewer": 10, "unknown": 5}
    services.add_room(username, Scenario(seed=11, rate=100, total=300, mix=mix))
    manifest = tmp_path / "livestream.yaml"
    manifest.write_text(yaml.safe_dump(livestream(name, username, workspaceId="e2e")))

    result = kubectl(control_plane, "apply", "-n", cluster.namespace, "-f", str(manifest))

    livestreams.adopt(name)
    assert f"livestream.tiktok.tiktok-service.io/{name} created" in result.stdout
    uid = cluster.get(name)["metadata"]["uid"]  # type: ignore[index]
    pod = wait_for(lambda: cluster.pod(name), what="the connector pod", explain=cluster.explain(name))
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Livestream", name, uid, True)
    assert pod.metadata.name == model.pod_name(name)
    assert pod.spec.restart_policy == "Never"
    container = pod.spec.containers[0]
    assert container.command == ["tiktok-service", "connector"]
    assert container.resources.requests == {
        "cpu": operator_settings.connector_cpu_request,
        "memory": operator_settings.connector_memory_request,
    }
    env = {item.name: item for item in container.env}
    assert env["CONNECTOR_LIVESTREAM_ID"].value == uid
    assert env["CONNECTOR_USERNAME"].value == username
    assert env["CONNECTOR_SIGN_API_URL"].value == services.simulator.base_url
    assert env["CONNECTOR_TIKTOK_WEBCAST_URL"].value == services.simulator.base_url + "/webcast"
    assert env["CONNECTOR_REDIS_URL"].value_from.secret_key_ref.name == "tiktok-connector"

    running = wait_for(lambda: cluster.running_pod(name), what="the connector to run", explain=cluster.explain(name))
    assert running.spec.node_name == MAIN_NODE
    status = wait_live(cluster, name)
    assert status["roomId"] == str(services.room_id(username))

    wait_for(lambda: services.events_sent(username) == 300, what="the room's 300 events", explain=cluster.explain(name))
    sent = services.sent(username)
    expected = expected_events(sent)
    wait_for(lambda: stream_events(redis_reader, uid) == expected, what="every event in Redis")
    wait_for(
        lambda: without_markers(services.bg.run(stored_events(services.database_url, uid))) == expected,
        what="every event in PostgreSQL, once",
    )
    stored = services.bg.run(stored_events(services.database_url, uid))
    assert len(stored) == len({event_id for event_id, _ in stored})
    last_viewers = [m["data"]["total"] for m in sent if m["kind"] == "viewer"][-1]

    def counted() -> dict[str, Any] | bool:
        status = cluster.status(name)
        counts = counts_in_redis(redis_reader, uid)
        return (
            status.get("eventCounts") == counts
            and status.get("totalEvents") == sum(counts.values())
            and status.get("viewerCount") == last_viewers
            and status
        )

    status = wait_for(counted, what="the status to count every event", explain=cluster.explain(name))
    assert status["phase"] == "Live"
    assert sum(status["eventCounts"].values()) >= len(expected)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True", "Connected": "True"}
    wait_for(
        lambda: row_matches(services.row(uid), cluster.status(name)),
        what="the livestreams row to match the status",
        explain=lambda: f"row: {services.row(uid)}\nstatus: {cluster.status(name)}",
    )
    row = services.row(uid)
    assert row is not None
    assert (row.username, row.workspace_id, row.status) == (username, "e2e", repo.LivestreamStatus.LIVE)


def test_the_end_of_the_live_stops_the_connector_with_exit_10_and_ends_the_livestream(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "ending", unique("ending_")
    services.add_room(username, Scenario(rate=20))
    uid = livestreams.create(name, username)["metadata"]["uid"]
    wait_live(cluster, name)

    assert services.end_live(username)

    wait_phase(cluster, name, "Ended", reason="LiveEnded")
    assert exit_of(cluster, name).exit_code == ExitCode.LIVE_ENDED
    wait_for(lambda: "LiveEnded" in cluster.events(name), what="a LiveEnded event")
    wait_for(lambda: services.row_status(uid) == repo.LivestreamStatus.ENDED, what="the row to end")
    assert services.row(uid).ended_at is not None  # type: ignore[union-attr]


def test_a_deleted_connector_pod_is_replaced_and_the_livestream_goes_live_again(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "replaced", unique("replaced_")
    services.add_room(username, Scenario(rate=20))
    livestreams.create(name, username)
    first_connection = wait_live(cluster, name)["connectedAt"]
    first = cluster.running_pod(name)
    assert first is not None

    cluster.delete_pod(first)

    second = wait_for(
        partial(cluster.running_pod, name, other_than=first.metadata.uid),
        what="a new connector pod",
        explain=cluster.explain(name),
    )
    status = wait_for(
        lambda: (
            (status := cluster.status(name)).get("phase") == "Live"
            and epoch(status.get("connectedAt")) > epoch(first_connection)
            and status
        ),
        what="Live again through the new connector",
        explain=cluster.explain(name),
    )
    assert status["restarts"] == 0  # a deleted pod is not a failure
    assert [pod.metadata.uid for pod in cluster.pods(name)] == [second.metadata.uid]


def test_a_connector_killed_every_time_it_starts_backs_off_longer_each_time_then_fails(
    cluster: Cluster, services: Services, livestreams: Livestreams, main_node: Node
) -> None:
    """SIGKILL, as the OOM killer or a crash would: a real retryable exit (137) of the real process."""
    name, username = "crashing", unique("crashing_")
    services.add_room(username, Scenario(rate=5))
    # A kubelet reports an exit a few seconds late: a shorter backoff is over before BackingOff shows.
    base = 10 if isinstance(main_node, KubeletNode) else 2
    policy = {"maxRestarts": 2, "backoffBaseSeconds": base, "backoffCapSeconds": 60}
    livestreams.create(name, username, restartPolicy=policy)
    delays: list[float] = []
    previous: str | None = None

    for attempt in (1, 2, 3):
        pod = wait_for(
            partial(cluster.running_pod, name, other_than=previous),
            what=f"connector start {attempt}",
            explain=cluster.explain(name),
        )
        assert pod.metadata.annotations[model.ANNOTATION_RESTARTS] == str(attempt - 1)
        os.kill(connector_pid(main_node, pod), signal.SIGKILL)
        previous = pod.metadata.uid
        if attempt == 3:
            break
        status = wait_phase(cluster, name, "BackingOff", restarts=attempt)
        killed = cluster.pod(name)
        assert killed is not None and killed.metadata.uid == previous  # kept until the retry is due
        terminated = container_status(killed).state.terminated  # type: ignore[union-attr]
        assert terminated.exit_code == 128 + signal.SIGKILL
        delays.append(epoch(status["nextRetryAt"]) - terminated.finished_at.timestamp())

    wait_phase(cluster, name, "Failed", reason="RestartLimitReached", restarts=2)
    assert delays == [base, 2.0 * base]
    assert [pod.metadata.uid for pod in cluster.pods(name)] == [previous]  # the last one is left to inspect
    wait_for(lambda: cluster.events(name).count("RestartScheduled") == 2, what="two RestartScheduled events")


def test_a_user_that_does_not_exist_fails_at_once_without_restarts(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "nobody", unique("nobody_")
    services.add_room(username, Scenario(not_found=True))
    uid = livestreams.create(name, username)["metadata"]["uid"]

    wait_phase(cluster, name, "Failed", reason="UserNotFound", restarts=0)

    assert exit_of(cluster, name).exit_code == ExitCode.USER_NOT_FOUND
    (pod,) = cluster.pods(name)
    assert pod.metadata.annotations[model.ANNOTATION_RESTARTS] == "0"
    wait_for(lambda: services.row_status(uid) == repo.LivestreamStatus.FAILED, what="the row to fail")


def test_pausing_removes_the_connector_and_running_again_brings_a_new_one_live(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "pausing", unique("pausing_")
    services.add_room(username, Scenario(rate=20))
    uid = livestreams.create(name, username)["metadata"]["uid"]
    wait_live(cluster, name)
    first = cluster.running_pod(name)
    assert first is not None

    cluster.patch_spec(name, {"state": "Paused"})

    wait_for(lambda: not cluster.pods(name), what="the pod to go", explain=cluster.explain(name))
    wait_phase(cluster, name, "Paused")
    wait_for(lambda: services.row_status(uid) == repo.LivestreamStatus.PAUSED, what="the row to be paused")

    cluster.patch_spec(name, {"state": "Running"})

    wait_for(
        partial(cluster.running_pod, name, other_than=first.metadata.uid),
        what="a new connector",
        explain=cluster.explain(name),
    )
    wait_live(cluster, name)
    assert "Resumed" in cluster.events(name)


def test_deleting_a_livestream_removes_its_connector_and_closes_its_row(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "deleted", unique("deleted_")
    services.add_room(username, Scenario(rate=20))
    uid = livestreams.create(name, username)["metadata"]["uid"]
    wait_live(cluster, name)

    cluster.delete(name)

    wait_for(partial(cluster.gone, name), what="the pod and the Livestream to be gone", explain=cluster.explain(name))
    row = services.row(uid)
    assert row is not None
    assert (row.status, row.reason) == (repo.LivestreamStatus.STOPPED, "Deleted")
    assert row.ended_at is not None


def test_a_restarted_operator_keeps_the_running_connector_and_resumes_reporting(
    cluster: Cluster, services: Services, operator: Operator, livestreams: Livestreams
) -> None:
    name, username = "adopted", unique("adopted_")
    services.add_room(username, Scenario(rate=20))
    livestreams.create(name, username)
    wait_live(cluster, name)
    pod = cluster.running_pod(name)
    assert pod is not None

    operator.stop()
    try:
        frozen = cluster.status(name).get("totalEvents", 0)
        sent = services.events_sent(username)
        wait_for(lambda: services.events_sent(username) > sent + 20, what="the room to go on while no operator runs")
    finally:
        operator.start()

    wait_for(
        lambda: cluster.status(name).get("totalEvents", 0) > frozen,
        what="the new operator to report the connector's progress",
        explain=cluster.explain(name),
    )
    assert cluster.phase(name) == "Live"
    (same,) = cluster.pods(name)
    assert same.metadata.uid == pod.metadata.uid
    assert container_status(same).container_id == container_status(pod).container_id  # the same process


def test_livestreams_beyond_a_full_node_wait_as_unschedulable_until_a_new_node_runs_them(
    control_plane: ControlPlane,
    cluster: Cluster,
    services: Services,
    operator_settings: OperatorSettings,
    connector_bin: Path,
    agents: list[Node],
    livestreams: Livestreams,
    tmp_path: Path,
) -> None:
    """What the cluster autoscaler does: add a node. The operator takes no action of its own.

    The added nodes are node agents whatever the main node is: their shape (capacity, labels,
    taints) is what the test needs, and one machine runs one kubelet.
    """
    pool = unique("pool-")
    request: Decimal = parse_quantity(operator_settings.connector_cpu_request)
    shape = {
        "capacity_cpu": f"{int(request * 3 * 1000)}m",  # room for exactly three connectors
        "labels": {POOL_LABEL: pool},
        "taints": [{"key": POOL_LABEL, "value": pool, "effect": "NoSchedule"}],
    }
    placement = {
        "nodeSelector": {POOL_LABEL: pool},
        "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": pool, "effect": "NoSchedule"}],
    }
    names = [f"scaled-{index}" for index in range(5)]
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(node_agent(control_plane, f"{pool}-a", connector_bin, tmp_path / "a", **shape))
        agents.append(first)
        stack.callback(agents.remove, first)
        stack.callback(livestreams.delete_all)  # while the nodes run: their agents confirm the pods' deletion
        for name in names:
            username = unique("scaled_")
            services.add_room(username, Scenario(rate=5))
            livestreams.create(name, username, connector=placement)

        def three_live_two_unschedulable() -> dict[str, str] | bool:
            found = {name: cluster.status(name) for name in names}
            phases = sorted(status.get("phase", "") for status in found.values())
            pending = [s for s in found.values() if s.get("phase") == "Pending"]
            return (
                phases == ["Live", "Live", "Live", "Pending", "Pending"]
                and all(s.get("reason") == "Unschedulable" for s in pending)
                and {name: s["phase"] for name, s in found.items()}
            )

        phases = wait_for(
            three_live_two_unschedulable,
            what="three Live and two Pending/Unschedulable",
            explain=cluster.explain(*names),
        )
        waiting = [name for name, phase in phases.items() if phase == "Pending"]
        for name in waiting:
            assert "Insufficient cpu" in cluster.status(name)["message"]
        uids = {name: cluster.pods(name)[0].metadata.uid for name in names}

        second = stack.enter_context(node_agent(control_plane, f"{pool}-b", connector_bin, tmp_path / "b", **shape))
        agents.append(second)
        stack.callback(agents.remove, second)
        stack.callback(livestreams.delete_all)

        for name in names:
            wait_live(cluster, name, timeout=90)
        assert {name: cluster.pods(name)[0].metadata.uid for name in names} == uids  # the same pods, now placed
        assert {cluster.pods(name)[0].spec.node_name for name in waiting} == {second.node_name}
        assert all(cluster.status(name)["restarts"] == 0 for name in names)


def test_a_proxy_list_from_a_secret_carries_the_connectors_traffic_and_never_shows_its_password(
    admin: client.ApiClient,
    cluster: Cluster,
    services: Services,
    livestreams: Livestreams,
    tmp_path: Path,
    main_node: Node,
) -> None:
    from tests.proxies import TinyProxy

    agent_only(main_node, "the proxies listen on loopback, which a pod's network namespace does not reach")

    name, username = "proxied", unique("proxied_")
    password = "pr0xy-Pa55.w0rd"
    services.add_room(username, Scenario(rate=20))
    with TinyProxy(tmp_path / "tinyproxy", username="alice", password=password) as proxy:
        secret = client.V1Secret(metadata=client.V1ObjectMeta(name="egress"), string_data={"list": proxy.url()})
        client.CoreV1Api(admin).create_namespaced_secret(cluster.namespace, secret)
        connection = {
            "proxySecretRef": {"name": "egress", "key": "list"},
            "locale": {"language": "de", "region": "DE", "timezone": "Europe/Berlin"},
        }

        livestreams.create(name, username, connection=connection)

        wait_live(cluster, name)
        requests = proxy.requests()
    port = services.simulator.port
    assert any(line.startswith(f"GET http://127.0.0.1:{port}/@{username}/live") for line in requests), requests
    assert any(line.startswith(f"CONNECT 127.0.0.1:{port} ") for line in requests), "the WebSocket"
    env = {item.name: item for item in container_status_env(cluster, name)}
    assert env["CONNECTOR_PROXIES"].value is None
    assert env["CONNECTOR_PROXIES"].value_from.secret_key_ref.name == "egress"
    assert env["CONNECTOR_LANGUAGE"].value == "de"
    events = client.CoreV1Api(admin).list_namespaced_event(cluster.namespace).items
    shown = f"{cluster.get(name)} {[(e.reason, e.message) for e in events]} {cluster.pod(name)}"
    assert password not in shown


def container_status_env(cluster: Cluster, name: str) -> list[client.V1EnvVar]:
    pod = cluster.pod(name)
    assert pod is not None
    return list(pod.spec.containers[0].env)
