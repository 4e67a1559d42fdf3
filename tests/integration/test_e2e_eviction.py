"""Evictions on a real node: the kubelet's node-pressure eviction, a drain, a pod beyond its own limits.

The setup of `test_e2e_kubelet.py` (control plane, one kubelet + containerd node, connector pods
from the product image, the operator with the deploy/ Role, Redis and the simulator on the
node's address), shared by the module. Each test does what the cluster does to a connector and
waits for the product to converge:

* the kubelet, restarted with a hard `memory.available` threshold the machine cannot meet,
  reports MemoryPressure, the node is tainted and the kubelet evicts the connector (pod Failed,
  reason `Evicted`, its message); the Livestream says so in an Event, its replacement waits under
  the taint (`Unschedulable`) and goes `Live` again once the kubelet runs with its normal
  config. The Livestream allows no restart at all (`maxRestarts: 0`): an eviction counted as a
  failure would fail it;
* `kubectl drain` evicts through the Eviction API (the connector gets SIGTERM and drains); the
  replacement waits while the node is cordoned and goes `Live` after `uncordon`. This one also
  runs on a node agent (the node of `make dev`) in the same cluster: the Eviction API is the
  API server's, so both kinds of node must take it the same way;
* a connector beyond its own ephemeral-storage limit is evicted too, and that one counts.

Nothing is lost that a connector held, nothing is doubled: TikTok (the simulator) replays its
last messages to each new connection, and the replacement's duplicate filter drops them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client, config

from tests import e2e_support
from tests.cluster_support import started_control_plane
from tests.e2e_support import (
    Cluster,
    Livestreams,
    Services,
    connector_bin_dir,
    kubelet_node,
    node_agent,
    prepared_namespace,
    product_image,
    services_on_node,
    unique,
    wait_for,
)
from tests.kubelet_support import KubeletNode, node_prerequisites
from tiktok_service.domain import naming
from tiktok_service.operator import model
from tiktok_service.settings import OperatorSettings
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.node_agent import NodeAgent
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.simulator.scenario import Scenario

_UNAVAILABLE = node_prerequisites()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # the first setup may build the product image
    pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or ""),
]

OPERATOR_USER = "operator"
NODE = "e2e-eviction"
AGENT = "e2e-eviction-agent"
VENV_BIN = Path(sys.executable).parent
#: One message = one event id (no gift streaks), so "doubled" is simply a repeated id.
MIX = {"comment": 50, "like": 30, "join": 20}
NEVER_RESTART = {"maxRestarts": 0, "backoffBaseSeconds": 1, "backoffCapSeconds": 1}
_MARKERS = frozenset({"tiktok.connect", "tiktok.disconnect"})


# -- the cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[OPERATOR_USER]) as cp:
        yield cp


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane) -> Iterator[KubeletNode]:
    with kubelet_node(control_plane, NODE) as running:
        yield running


@pytest.fixture(scope="module")
def agent(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    """A second node, of the kind `make dev` runs: pods as local processes."""
    work = tmp_path_factory.mktemp(AGENT)
    bin_dir = connector_bin_dir(work / "bin", VENV_BIN)
    with node_agent(control_plane, AGENT, bin_dir=bin_dir, work_dir=work) as running:
        yield running


@pytest.fixture(scope="module")
def services(node: KubeletNode, postgres_server: LocalPostgres) -> Iterator[Services]:
    with services_on_node(node, postgres_server) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, node: KubeletNode, agent: NodeAgent, services: Services) -> Iterator[Cluster]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as admin:
        namespace = prepared_namespace(
            admin, prefix="eviction", operator_user=OPERATOR_USER, redis_url=services.redis_url
        )
        base_url = services.simulator.base_url
        settings: OperatorSettings = operator_harness.quick_settings(
            kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
            namespace=namespace,
            redis_url=services.redis_url,
            database_url=services.database_url,
            sign_api_url=base_url,
            tiktok_app_url=base_url,
            tiktok_webcast_url=base_url + "/webcast",
            connector_image=product_image(),
            connector_image_pull_policy="Never",
        )
        with operator_harness.OperatorThread(settings):
            yield Cluster(admin, namespace, [node, agent])


# -- helpers -------------------------------------------------------------------------------------

#: A pod on a real node takes longer to start (sandbox, image, probes) than a node agent's process.
wait_phase = partial(e2e_support.wait_phase, timeout=90.0)


def running_pod(cluster: Cluster, name: str, *, other_than: str | None = None) -> client.V1Pod:
    return wait_for(
        partial(cluster.running_pod, name, other_than=other_than),
        what=f"the connector container of {name} to run",
        timeout=90,
        explain=cluster.explain(name),
    )


def events_of(cluster: Cluster, kind: str, name: str, reason: str) -> list[client.CoreV1Event]:
    """Events with `reason` recorded on the object `kind`/`name` (the Livestream, or its pod)."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name},reason={reason}"
    return list(cluster.core.list_namespaced_event(cluster.namespace, field_selector=selector).items)


def stream_ids(reader: redis.Redis, uid: str) -> list[str]:
    """Event ids in the Livestream's own stream, in order, repeats kept (markers left out)."""
    entries = reader.xrange(naming.livestream_stream(uid))
    return [f[naming.FIELD_ID].decode() for _, f in entries if f[naming.FIELD_TYPE].decode() not in _MARKERS]


def replayed(services: Services, username: str) -> int:
    """Messages the simulated TikTok replayed to new connections (its `history`), so far."""
    return int(services.bg.call(lambda: services.simulator.room(username).stats_json()["history_replayed"]))


def on(node_name: str) -> dict[str, Any]:
    """`spec.connector` pinning the connector to one node (an administrator's field; the tests are admin)."""
    return {"nodeSelector": {"kubernetes.io/hostname": node_name}}


def memory_pressure() -> dict[str, object]:
    """Kubelet config under which this machine is always short of memory.

    A hard `memory.available` threshold 256 MiB below the machine's memory: the node is under
    pressure as long as anything at all runs. Absolute, not a percentage, so the node's
    allocatable memory (capacity minus the threshold) still holds the connector the kubelet
    re-admits when it restarts, and the replacement is kept off by the taint alone.
    """
    total_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "evictionHard": {
            "memory.available": f"{total_kib - 256 * 1024}Ki",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "evictionPressureTransitionPeriod": "5s",
    }


def pressure(node: KubeletNode, kind: str) -> str | None:
    found = node.condition(kind)
    return found.get("status") if found else None


def assert_nothing_doubled(reader: redis.Redis, uid: str) -> None:
    ids = stream_ids(reader, uid)
    doubled = sorted({event_id for event_id in ids if ids.count(event_id) > 1})
    assert not doubled, f"{len(doubled)} events doubled in the livestream stream: {doubled[:5]}"


def live_again_without_doubles(
    cluster: Cluster, services: Services, reader: redis.Redis, name: str, username: str, uid: str, before: int
) -> None:
    """`Live` with no restart counted, TikTok's replay to the new connection dropped as duplicates."""
    wait_phase(cluster, name, "Live", timeout=120, restarts=0)
    published = len(stream_ids(reader, uid))
    wait_for(lambda: replayed(services, username) > before, what="TikTok's replay to the replacement")
    wait_for(lambda: len(stream_ids(reader, uid)) > published + 20, what="new events from the replacement")
    assert_nothing_doubled(reader, uid)


# -- tests ---------------------------------------------------------------------------------------


def test_a_node_short_of_memory_evicts_the_connector_and_its_livestream_recovers_uncounted(
    node: KubeletNode, cluster: Cluster, services: Services, livestreams: Livestreams, redis_reader: redis.Redis
) -> None:
    name, username = "pressed", unique("pressed_")
    services.add_room(username, Scenario(rate=10, mix=MIX))
    uid = livestreams.create(name, username, restartPolicy=NEVER_RESTART, connector=on(NODE))["metadata"]["uid"]
    wait_phase(cluster, name, "Live")
    first = running_pod(cluster, name)
    wait_for(lambda: len(stream_ids(redis_reader, uid)) >= 20, what="events from the first connector")
    before = replayed(services, username)

    try:
        node.restart(memory_pressure())  # its containers keep running meanwhile

        wait_for(lambda: pressure(node, "MemoryPressure") == "True", what="MemoryPressure", timeout=60)
        kubelet_says = wait_for(
            lambda: events_of(cluster, "Pod", first.metadata.name, "Evicted"),
            what="the kubelet's eviction of the connector",
            timeout=60,
            explain=cluster.explain(name),
        )[0].message
        assert kubelet_says.startswith("The node was low on resource: memory.")
        ours = wait_for(
            lambda: events_of(cluster, "Livestream", name, "Evicted"),
            what="the Livestream's Evicted event",
            explain=cluster.explain(name),
        )
        assert ours[0].type == "Warning" and kubelet_says.strip() in ours[0].message
        assert "not counted toward maxRestarts" in ours[0].message
        wait_for(lambda: "node.kubernetes.io/memory-pressure:NoSchedule" in node.taints(), what="the pressure taint")
        waiting = wait_phase(cluster, name, "Pending", reason="Unschedulable", restarts=0)
        assert "untolerated taint" in waiting["message"]  # the scheduler does not name it
        replacement = cluster.pod(name)
        assert replacement is not None and replacement.metadata.uid != first.metadata.uid
        assert replacement.metadata.annotations[model.ANNOTATION_RESTARTS] == "0"
        print(f"evictions while under pressure: {len(events_of(cluster, 'Livestream', name, 'Evicted'))}")
    finally:
        node.restart()

    wait_for(lambda: pressure(node, "MemoryPressure") == "False", what="the pressure to end")
    live_again_without_doubles(cluster, services, redis_reader, name, username, uid, before)
    assert "RestartScheduled" not in cluster.events(name)


@pytest.mark.parametrize("target", [NODE, AGENT], ids=["kubelet", "node-agent"])
def test_a_drain_evicts_the_connector_and_the_replacement_waits_for_the_uncordon(
    target: str,
    node: KubeletNode,
    cluster: Cluster,
    services: Services,
    livestreams: Livestreams,
    redis_reader: redis.Redis,
) -> None:
    name, username = f"drained-{target}", unique("drained_")
    services.add_room(username, Scenario(rate=10, mix=MIX))
    uid = livestreams.create(name, username, restartPolicy=NEVER_RESTART, connector=on(target))["metadata"]["uid"]
    wait_phase(cluster, name, "Live")
    first = running_pod(cluster, name)
    wait_for(lambda: len(stream_ids(redis_reader, uid)) >= 20, what="events from the first connector")
    before = replayed(services, username)

    try:
        # The connector's /tmp is an emptyDir: kubectl drain refuses it unless told that is fine.
        refused = node.kubectl("drain", target, "--ignore-daemonsets", "--timeout=30s", check=False)
        assert refused.returncode != 0 and "--delete-emptydir-data" in refused.stderr, refused.stderr
        node.kubectl("drain", target, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s", timeout=120)

        ours = wait_for(
            lambda: events_of(cluster, "Livestream", name, "Evicted"),
            what="the Livestream's Evicted event",
            explain=cluster.explain(name),
        )
        assert "Eviction API" in ours[0].message
        waiting = wait_phase(cluster, name, "Pending", reason="Unschedulable", restarts=0)
        assert "nodes are available" in waiting["message"]
        cordoned = node.kubectl("get", "node", target, "-o", "jsonpath={.spec.unschedulable}").stdout
        assert cordoned == "true"
        replacement = cluster.pod(name)
        assert replacement is not None and replacement.metadata.uid != first.metadata.uid
    finally:
        node.kubectl("uncordon", target)

    live_again_without_doubles(cluster, services, redis_reader, name, username, uid, before)
    assert "RestartScheduled" not in cluster.events(name)


def test_a_connector_beyond_its_own_storage_limit_is_evicted_and_that_counts(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    """Counted whatever the kubelet leaves in the pod's status.

    The eviction gives the connector 1 s: killed before it has drained (137), the pod is `Failed`
    / `Evicted` with the kubelet's message; drained and exited 0 in time, the pod is `Succeeded`
    with no reason at all (and, unlike a node-pressure eviction, no `DisruptionTarget` either):
    only the kubelet's Event on the pod says why, and the Livestream says where to look.
    """
    name, username = "hoarder", unique("hoarder_")
    services.add_room(username, Scenario(rate=10, mix=MIX))
    # Its log alone is beyond 1 KiB within a moment: ephemeral storage counts container logs.
    resources = {"limits": {"ephemeral-storage": "1Ki"}}
    one_restart = {"maxRestarts": 1, "backoffBaseSeconds": 1, "backoffCapSeconds": 1}
    livestreams.create(name, username, restartPolicy=one_restart, connector={"resources": resources, **on(NODE)})

    failed = wait_phase(cluster, name, "Failed", timeout=120, reason="RestartLimitReached")

    assert "connector failed 2 times in a row" in failed["message"], failed
    pod = cluster.pod(name)
    assert pod is not None
    kubelet_says = events_of(cluster, "Pod", pod.metadata.name, "Evicted")
    assert kubelet_says and all("ephemeral local storage" in event.message for event in kubelet_says), kubelet_says
    recorded = "ephemeral local storage" in failed["message"]
    assert recorded or "see the pod's events" in failed["message"], failed
    assert cluster.events(name).count("RestartScheduled") == 1
    evicted = events_of(cluster, "Livestream", name, "Evicted")  # one per eviction whose pod status said so
    assert all("its own limits" in event.message for event in evicted), evicted
    status = pod.status
    assert status is not None
    if recorded:  # the last pod's status says it was evicted, and that was announced
        assert status.reason == "Evicted" and "ephemeral local storage" in (status.message or ""), status
        assert evicted, "an eviction recorded in the pod's status got no Evicted Event on the Livestream"
    else:  # the last connector drained and exited 0 in time: its status says nothing, only the first pod's may have
        exits = [
            s.state.terminated.exit_code
            for s in status.container_statuses or []
            if s.name == model.CONTAINER and s.state is not None and s.state.terminated is not None
        ]
        assert status.reason != "Evicted" and exits == [0], status
        assert len(evicted) <= 1, evicted
