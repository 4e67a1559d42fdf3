"""The operator against a real API server, Redis and PostgreSQL, with exactly the deploy/ Role.

No kubelet runs here: where a pod must look Running or Failed the test binds it to a Node
it created (cordoned, so the scheduler never uses it) and writes the pod status the way a
kubelet would. Pods left unbound are deleted at once, which stands in for a kubelet
confirming a deletion.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from kubernetes import client, config

from tests.access_support import database_as, redis_as
from tests.cluster_support import started_control_plane
from tests.support import wait_until
from tiktok_service.database import livestreams_repository as repo
from tiktok_service.database.migrate import migrate
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus
from tiktok_service.operator import model
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane

pytestmark = pytest.mark.slow

OPERATOR_USER = "operator"
NODE = "fake-node"
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[OPERATOR_USER]) as cp:
        with config.new_client_from_config(config_file=str(cp.kubeconfig_path)) as api:
            client.CoreV1Api(api).create_node(cordoned_node(NODE))
        yield cp


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(control_plane.kubeconfig_path))
    with api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace where the operator user holds exactly the deploy/ Role."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    operator_harness.grant_role(api, namespace=name, user=OPERATOR_USER)
    yield name
    client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
async def migrated_database(database_url: str) -> AsyncIterator[str]:
    await migrate(database_url)
    yield database_url


@pytest.fixture
def operator_settings(
    control_plane: ControlPlane, namespace: str, redis_url: str, migrated_database: str
) -> operator_harness.config.OperatorSettings:
    return operator_harness.quick_settings(
        kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
        namespace=namespace,
        redis_url=redis_as(redis_url, Role.OPERATOR),
        database_url=database_as(migrated_database, Role.OPERATOR),
    )


@pytest.fixture
def operator(operator_settings: operator_harness.config.OperatorSettings) -> Iterator[operator_harness.OperatorThread]:
    with operator_harness.OperatorThread(operator_settings) as running:
        yield running


# -- helpers ----------------------------------------------------------------------------------


def cordoned_node(name: str) -> client.V1Node:
    now = dt.datetime.now(dt.UTC)
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1NodeSpec(unschedulable=True),
        status=client.V1NodeStatus(
            capacity=capacity,
            allocatable=capacity,
            conditions=[
                client.V1NodeCondition(
                    type="Ready",
                    status="True",
                    reason="KubeletReady",
                    last_heartbeat_time=now,
                    last_transition_time=now,
                )
            ],
        ),
    )


def livestream(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": name},
        "spec": {"username": f"user_{name[:10]}", **spec},
    }


class Cluster:
    """The test's view of one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def call(self, method: str, path: str, body: dict[str, Any]) -> None:
        """A raw request (the generated client cannot parse the answer to a pod binding)."""
        request = self.api.param_serialize(method, path, body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*request[:4])
        response.read()
        assert response.status < 300, response.data

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            model.GROUP, model.VERSION, self.namespace, model.PLURAL, body
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            model.GROUP, model.VERSION, self.namespace, model.PLURAL, name
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            model.GROUP, model.VERSION, self.namespace, model.PLURAL, name, {"spec": spec}
        )

    def peers(self, peering: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object("kopf.dev", "v1", self.namespace, "kopfpeerings", peering)
        return dict(found.get("status") or {})

    def livestreams(self) -> list[str]:
        found = self.custom.list_namespaced_custom_object(model.GROUP, model.VERSION, self.namespace, model.PLURAL)
        return [item["metadata"]["name"] for item in found["items"]]

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def pods(self) -> list[client.V1Pod]:
        return list(self.core.list_namespaced_pod(self.namespace).items)

    def pod(self, livestream_name: str) -> client.V1Pod | None:
        wanted = model.pod_name(livestream_name)
        return next((pod for pod in self.pods() if pod.metadata.name == wanted), None)

    def run_pod(self, livestream_name: str, *, started: dt.datetime | None = None) -> client.V1Pod:
        """Bind the pod to the node and report it Running, as the scheduler and a kubelet would."""
        pod = self.pod(livestream_name)
        assert pod is not None
        name = pod.metadata.name
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"kind": "Node", "name": NODE},
        }
        self.call("POST", f"/api/v1/namespaces/{self.namespace}/pods/{name}/binding", binding)
        moment = (started or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        container = {"name": model.CONTAINER, "ready": True, "restartCount": 0, "image": "x", "imageID": ""}
        status = {
            "phase": "Running",
            "startTime": moment,
            "containerStatuses": [{**container, "state": {"running": {"startedAt": moment}}}],
        }
        return self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def finish_pod(self, livestream_name: str, exit_code: int, finished: dt.datetime) -> None:
        """Report the connector container terminated with `exit_code` (pod phase Failed/Succeeded)."""
        name = model.pod_name(livestream_name)
        moment = finished.strftime("%Y-%m-%dT%H:%M:%SZ")
        container = {"name": model.CONTAINER, "ready": False, "restartCount": 0, "image": "x", "imageID": ""}
        terminated = {"exitCode": exit_code, "reason": "Error", "startedAt": moment, "finishedAt": moment}
        status = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{**container, "state": {"terminated": terminated}}],
        }
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def events(self, name: str) -> list[str]:
        found = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
        return [event.reason for event in found.items]


@pytest.fixture
def cluster(api: client.ApiClient, namespace: str) -> Cluster:
    return Cluster(api, namespace)


async def report(redis: aioredis.Redis, livestream_id: str, status: ConnectorStatus, counts: dict[str, int]) -> None:
    """Write what a connector writes: its per-type counters and its status hash.

    Counters first, as a connector publishes events before its heartbeat reports them: an
    operator pass between the two writes then sees the old status, never a new phase
    without its counts (which would make the counts wait for the status interval).
    """
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    if counts:
        await redis.hset(naming.event_counts_key(livestream_id), mapping=counts)  # type: ignore[arg-type]
    await redis.hset(naming.connector_status_key(livestream_id), mapping=status.to_hash(now_ms=now_ms))  # type: ignore[arg-type]


async def row(database_url: str, uid: str) -> repo.Livestream | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await repo.get_livestream(conn, uuid.UUID(uid))
    finally:
        await conn.close()


def env_of(pod: client.V1Pod) -> dict[str, str | None]:
    return {item.name: item.value for item in pod.spec.containers[0].env}


# -- tests ------------------------------------------------------------------------------------


async def test_a_new_livestream_gets_one_connector_pod_built_from_its_spec(
    operator: operator_harness.OperatorThread, cluster: Cluster, migrated_database: str
) -> None:
    created = cluster.create(livestream("alice", eventTypes=["tiktok.comment"]))
    uid = created["metadata"]["uid"]

    await wait_until(lambda: cluster.pod("alice") is not None, timeout=DEADLINE_S, what="the connector pod")

    pod = cluster.pod("alice")
    assert pod is not None
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Livestream", "alice", uid, True)
    assert pod.metadata.labels[model.LABEL_LIVESTREAM] == "alice"
    assert pod.metadata.labels[model.LABEL_NAME] == model.CONNECTOR_APP
    env = env_of(pod)
    assert env["CONNECTOR_LIVESTREAM_ID"] == uid
    assert env["CONNECTOR_USERNAME"] == "user_alice"
    assert env["CONNECTOR_EVENT_TYPES"] == '["tiktok.comment"]'
    container = pod.spec.containers[0]
    assert container.resources.requests == {"cpu": "50m", "memory": "112Mi"}
    assert container.security_context.read_only_root_filesystem is True
    assert pod.spec.restart_policy == "Never"
    assert len(cluster.pods()) == 1
    await wait_until(
        lambda: cluster.status("alice").get("podName") == pod.metadata.name, timeout=DEADLINE_S, what="status.podName"
    )
    assert cluster.status("alice")["phase"] == "Pending"
    assert "tiktok-service.io/finalizer" in cluster.get("alice")["metadata"]["finalizers"]
    stored = await row(migrated_database, uid)
    assert stored is not None
    assert (stored.username, stored.status) == ("user_alice", repo.LivestreamStatus.PENDING)


async def test_a_connector_reporting_live_makes_the_livestream_live_and_its_row_matches(
    operator: operator_harness.OperatorThread, cluster: Cluster, redis_client: aioredis.Redis, migrated_database: str
) -> None:
    uid = cluster.create(livestream("bob"))["metadata"]["uid"]
    await wait_until(lambda: cluster.pod("bob") is not None, timeout=DEADLINE_S, what="the connector pod")
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    cluster.run_pod("bob", started=started)
    connected_ms = int(started.timestamp() * 1000) + 2000
    live = ConnectorStatus(
        phase=ConnectorPhase.LIVE,
        room_id=7312345678901234567,
        viewer_count=321,
        connected_at_ms=connected_ms,
        last_event_at_ms=connected_ms + 1000,
    )

    await report(redis_client, uid, live, {"tiktok.comment": 7, "tiktok.gift": 2})

    await wait_until(lambda: cluster.status("bob").get("phase") == "Live", timeout=DEADLINE_S, what="phase Live")
    await wait_until(lambda: cluster.status("bob").get("totalEvents") == 9, timeout=DEADLINE_S, what="the counts")
    status = cluster.status("bob")
    assert status["roomId"] == "7312345678901234567"
    assert status["viewerCount"] == 321
    assert status["eventCounts"] == {"tiktok.comment": 7, "tiktok.gift": 2}
    assert status["connectedAt"] == model.format_time(connected_ms / 1000)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True", "Connected": "True"}
    await wait_until(lambda: "Connected" in cluster.events("bob"), timeout=DEADLINE_S, what="a Connected event")

    async def row_is_live() -> bool:
        stored = await row(migrated_database, uid)
        return stored is not None and stored.status is repo.LivestreamStatus.LIVE and stored.viewer_count == 321

    await wait_until(row_is_live, timeout=DEADLINE_S, what="the livestreams row to show live")
    stored = await row(migrated_database, uid)
    assert stored is not None
    assert stored.room_id == 7312345678901234567
    assert stored.event_counts == {"tiktok.comment": 7, "tiktok.gift": 2}
    assert stored.connected_at == dt.datetime.fromtimestamp(connected_ms // 1000, tz=dt.UTC)


async def test_exit_code_10_ends_the_livestream_and_closes_its_row(
    operator: operator_harness.OperatorThread, cluster: Cluster, migrated_database: str
) -> None:
    uid = cluster.create(livestream("carol"))["metadata"]["uid"]
    await wait_until(lambda: cluster.pod("carol") is not None, timeout=DEADLINE_S, what="the connector pod")
    cluster.run_pod("carol")

    cluster.finish_pod("carol", 10, dt.datetime.now(dt.UTC))

    await wait_until(lambda: cluster.status("carol").get("phase") == "Ended", timeout=DEADLINE_S, what="phase Ended")
    assert cluster.status("carol")["reason"] == "LiveEnded"
    await wait_until(lambda: "LiveEnded" in cluster.events("carol"), timeout=DEADLINE_S, what="a LiveEnded event")

    async def row_is_ended() -> bool:
        stored = await row(migrated_database, uid)
        return stored is not None and stored.status is repo.LivestreamStatus.ENDED and stored.ended_at is not None

    await wait_until(row_is_ended, timeout=DEADLINE_S, what="the row to be closed as ended")
    pod = cluster.pod("carol")
    assert pod is not None and pod.status.phase == "Failed"  # kept for its logs, not restarted


async def test_a_deleted_pod_is_recreated(operator: operator_harness.OperatorThread, cluster: Cluster) -> None:
    cluster.create(livestream("dave"))
    await wait_until(lambda: cluster.pod("dave") is not None, timeout=DEADLINE_S, what="the connector pod")
    first = cluster.pod("dave")
    assert first is not None

    cluster.core.delete_namespaced_pod(first.metadata.name, cluster.namespace, grace_period_seconds=0)

    def replaced() -> bool:
        pod = cluster.pod("dave")
        return pod is not None and pod.metadata.uid != first.metadata.uid

    await wait_until(replaced, timeout=DEADLINE_S, what="a new pod")
    assert len(cluster.pods()) == 1


async def test_a_connector_failing_again_and_again_backs_off_longer_each_time_then_fails(
    operator: operator_harness.OperatorThread, cluster: Cluster
) -> None:
    policy = {"maxRestarts": 2, "backoffBaseSeconds": 1, "backoffCapSeconds": 60}
    cluster.create(livestream("erin", restartPolicy=policy))
    retry_delays: list[float] = []
    for attempt in range(1, 3):
        await wait_until(lambda: cluster.pod("erin") is not None, timeout=DEADLINE_S, what=f"pod {attempt}")
        previous_uid = cluster.pod("erin").metadata.uid  # type: ignore[union-attr]
        cluster.run_pod("erin")
        finished = dt.datetime.now(dt.UTC).replace(microsecond=0)
        cluster.finish_pod("erin", 1, finished)

        def backing_off(n: int = attempt) -> bool:
            status = cluster.status("erin")
            return status.get("phase") == "BackingOff" and status.get("restarts") == n

        await wait_until(backing_off, timeout=DEADLINE_S, what=f"BackingOff after failure {attempt}")
        next_retry = model.parse_time(cluster.status("erin")["nextRetryAt"])
        assert next_retry is not None
        retry_delays.append(next_retry - finished.timestamp())

        def restarted(old: str = previous_uid) -> bool:
            pod = cluster.pod("erin")
            return pod is not None and pod.metadata.uid != old

        await wait_until(restarted, timeout=DEADLINE_S, what=f"restart {attempt}")
        assert cluster.pod("erin").metadata.annotations[model.ANNOTATION_RESTARTS] == str(attempt)  # type: ignore[union-attr]

    assert retry_delays == [1.0, 2.0]
    cluster.run_pod("erin")
    cluster.finish_pod("erin", 1, dt.datetime.now(dt.UTC))

    await wait_until(lambda: cluster.status("erin").get("phase") == "Failed", timeout=DEADLINE_S, what="phase Failed")
    assert cluster.status("erin")["reason"] == "RestartLimitReached"
    await wait_until(lambda: "RestartLimitReached" in cluster.events("erin"), timeout=DEADLINE_S, what="the event")
    assert cluster.events("erin").count("RestartScheduled") == 2
    assert cluster.pod("erin").status.phase == "Failed"  # type: ignore[union-attr]


async def test_an_exit_reported_after_its_backoff_passed_is_restarted_at_once_and_still_leaves_an_event(
    operator: operator_harness.OperatorThread, cluster: Cluster
) -> None:
    """A real kubelet may report an exit late: the restart is due when the operator first sees it."""
    cluster.create(
        livestream("fern", restartPolicy={"maxRestarts": 3, "backoffBaseSeconds": 1, "backoffCapSeconds": 1})
    )
    await wait_until(lambda: cluster.pod("fern") is not None, timeout=DEADLINE_S, what="the pod")
    first = cluster.pod("fern").metadata.uid  # type: ignore[union-attr]
    cluster.run_pod("fern")
    cluster.finish_pod("fern", 1, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60))  # a minute late

    def restarted() -> bool:
        pod = cluster.pod("fern")
        return pod is not None and pod.metadata.uid != first

    await wait_until(restarted, timeout=DEADLINE_S, what="the restart")
    await wait_until(lambda: "RestartScheduled" in cluster.events("fern"), timeout=DEADLINE_S, what="its event")
    assert cluster.events("fern").count("RestartScheduled") == 1
    assert cluster.pod("fern").metadata.annotations[model.ANNOTATION_RESTARTS] == "1"  # type: ignore[union-attr]


async def test_pausing_removes_the_pod_and_running_again_creates_a_new_one(
    operator: operator_harness.OperatorThread, cluster: Cluster
) -> None:
    cluster.create(livestream("fay"))
    await wait_until(lambda: cluster.pod("fay") is not None, timeout=DEADLINE_S, what="the connector pod")
    first_uid = cluster.pod("fay").metadata.uid  # type: ignore[union-attr]

    cluster.patch_spec("fay", {"state": "Paused"})

    await wait_until(lambda: cluster.pod("fay") is None, timeout=DEADLINE_S, what="the pod to be removed")
    await wait_until(lambda: cluster.status("fay").get("phase") == "Paused", timeout=DEADLINE_S, what="phase Paused")
    assert {c["type"]: c["status"] for c in cluster.status("fay")["conditions"]}["Ready"] == "False"

    cluster.patch_spec("fay", {"state": "Running"})

    await wait_until(lambda: cluster.pod("fay") is not None, timeout=DEADLINE_S, what="a new pod")
    assert cluster.pod("fay").metadata.uid != first_uid  # type: ignore[union-attr]
    await wait_until(lambda: "Resumed" in cluster.events("fay"), timeout=DEADLINE_S, what="a Resumed event")
    assert "Paused" in cluster.events("fay")


async def test_a_spec_change_replaces_the_pod(operator: operator_harness.OperatorThread, cluster: Cluster) -> None:
    cluster.create(livestream("gus"))
    await wait_until(lambda: cluster.pod("gus") is not None, timeout=DEADLINE_S, what="the connector pod")

    cluster.patch_spec("gus", {"waitForLive": True})

    def replaced() -> bool:
        pod = cluster.pod("gus")
        return pod is not None and env_of(pod)["CONNECTOR_WAIT_FOR_LIVE"] == "true"

    await wait_until(replaced, timeout=DEADLINE_S, what="a pod built from the new spec")
    assert len(cluster.pods()) == 1


async def test_a_pod_no_node_can_take_is_pending_as_unschedulable(
    operator: operator_harness.OperatorThread, cluster: Cluster
) -> None:
    cluster.create(livestream("hal"))

    def unschedulable() -> bool:
        status = cluster.status("hal")
        return status.get("phase") == "Pending" and status.get("reason") == "Unschedulable"

    await wait_until(unschedulable, timeout=DEADLINE_S, what="Pending/Unschedulable from the scheduler's verdict")
    assert "nodes are available" in cluster.status("hal")["message"]


async def test_a_pod_the_api_server_refuses_backs_off_with_its_reason_and_an_event_then_starts_once_allowed(
    operator: operator_harness.OperatorThread, cluster: Cluster
) -> None:
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})
    )
    cluster.core.create_namespaced_resource_quota(cluster.namespace, quota)

    def quota_counted() -> bool:  # the quota controller has taken stock: admission now answers "exceeded quota"
        found = cluster.core.read_namespaced_resource_quota("no-pods", cluster.namespace)
        return bool(found.status and found.status.hard)

    await wait_until(quota_counted, timeout=DEADLINE_S, what="the quota's status")
    cluster.create(livestream("ivy", restartPolicy={"maxRestarts": 1, "backoffBaseSeconds": 1, "backoffCapSeconds": 2}))

    def refused(attempt: int) -> bool:
        status = cluster.status("ivy")
        return status.get("reason") == "PodRefused" and f"attempt {attempt}," in status.get("message", "")

    await wait_until(lambda: refused(1), timeout=DEADLINE_S, what="the first refusal in the status")
    status = cluster.status("ivy")
    assert status["phase"] == "BackingOff"
    assert model.parse_time(status["nextRetryAt"]) is not None
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PodRefused")
    assert "(403 Forbidden)" in ready["message"] and "exceeded quota: no-pods" in ready["message"]
    await wait_until(lambda: refused(3), timeout=DEADLINE_S, what="a third refusal, after backing off")
    assert cluster.status("ivy")["restarts"] == 0  # refusals are no connector failures: never Failed by them
    events = cluster.events("ivy")
    assert events.count("PodRefused") >= 3 and "RestartScheduled" not in events
    refused_total = operator.metrics.registry.get_sample_value(
        "tiktok_operator_pod_actions_total", {"action": "refused"}
    )
    assert refused_total is not None and refused_total >= 3
    assert cluster.pod("ivy") is None

    cluster.core.delete_namespaced_resource_quota("no-pods", cluster.namespace)

    await wait_until(lambda: cluster.pod("ivy") is not None, timeout=DEADLINE_S, what="the pod once the quota is gone")
    await wait_until(
        lambda: cluster.status("ivy").get("podName") == model.pod_name("ivy"), timeout=DEADLINE_S, what="the status"
    )


async def test_a_restarted_operator_goes_on_counting_refusals_where_the_status_says(
    operator_settings: operator_harness.config.OperatorSettings, cluster: Cluster
) -> None:
    """The count of refusals in a row is in the status: a new operator's first refusal is the next one, not 1."""
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods-again"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})
    )
    cluster.core.create_namespaced_resource_quota(cluster.namespace, quota)
    try:

        def quota_counted() -> bool:
            found = cluster.core.read_namespaced_resource_quota("no-pods-again", cluster.namespace)
            return bool(found.status and found.status.hard)

        await wait_until(quota_counted, timeout=DEADLINE_S, what="the quota's status")
        policy = {"maxRestarts": 1, "backoffBaseSeconds": 2, "backoffCapSeconds": 60}
        with operator_harness.OperatorThread(operator_settings):
            cluster.create(livestream("kim", restartPolicy=policy))
            await wait_until(
                lambda: cluster.status("kim").get("podRefusals") == 2,
                timeout=DEADLINE_S,
                what="a second refusal in the status",
            )
        recorded = cluster.status("kim")

        with operator_harness.OperatorThread(operator_settings):
            await wait_until(
                lambda: cluster.status("kim").get("message") != recorded["message"],
                timeout=DEADLINE_S,
                what="the new operator's first refusal",
            )
            following = cluster.status("kim")
    finally:
        cluster.core.delete_namespaced_resource_quota("no-pods-again", cluster.namespace)

    assert "attempt 2," in recorded["message"]
    assert following["reason"] == "PodRefused"
    assert "attempt 3," in following["message"], following["message"]
    assert following["podRefusals"] == 3


async def assert_finalized(cluster: Cluster, name: str, *, database: str, uid: str) -> None:
    """The deleted Livestream's pod is gone, kopf released it, and its row is closed as Deleted."""
    await wait_until(lambda: cluster.pod(name) is None, timeout=DEADLINE_S, what="the pod to be removed")
    await wait_until(lambda: name not in cluster.livestreams(), timeout=DEADLINE_S, what="the finalizer's release")
    stored = await row(database, uid)
    assert stored is not None
    assert (stored.status, stored.reason) == (repo.LivestreamStatus.STOPPED, "Deleted")
    assert stored.ended_at is not None


async def test_deleting_the_livestream_removes_its_pod_and_closes_its_row(
    operator: operator_harness.OperatorThread, cluster: Cluster, migrated_database: str
) -> None:
    uid = cluster.create(livestream("ivy"))["metadata"]["uid"]
    await wait_until(lambda: cluster.pod("ivy") is not None, timeout=DEADLINE_S, what="the connector pod")

    cluster.custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, cluster.namespace, model.PLURAL, "ivy")

    await assert_finalized(cluster, "ivy", database=migrated_database, uid=uid)


async def test_a_livestream_deleted_while_no_operator_runs_is_cleaned_up_by_the_next_one(
    operator_settings: operator_harness.config.OperatorSettings, cluster: Cluster, migrated_database: str
) -> None:
    with operator_harness.OperatorThread(operator_settings):
        uid = cluster.create(livestream("nia"))["metadata"]["uid"]
        await wait_until(lambda: cluster.pod("nia") is not None, timeout=DEADLINE_S, what="the connector pod")

    cluster.custom.delete_namespaced_custom_object(model.GROUP, model.VERSION, cluster.namespace, model.PLURAL, "nia")
    held = cluster.get("nia")["metadata"]
    assert held["deletionTimestamp"] and held["finalizers"] == [model.FINALIZER]  # no operator, no release
    assert cluster.pod("nia") is not None

    with operator_harness.OperatorThread(operator_settings):
        await assert_finalized(cluster, "nia", database=migrated_database, uid=uid)


async def test_the_operator_writes_nothing_onto_a_livestream_but_its_finalizer_and_status(
    operator: operator_harness.OperatorThread, cluster: Cluster
) -> None:
    cluster.create(livestream("oz"))

    await wait_until(lambda: cluster.status("oz").get("podName") is not None, timeout=DEADLINE_S, what="a status")

    metadata = cluster.get("oz")["metadata"]
    assert metadata["finalizers"] == [model.FINALIZER]
    assert not metadata.get("annotations")  # no kopf state (last-handled configuration, progress)
    assert metadata["generation"] == 1


async def test_a_restarted_operator_adopts_the_existing_pod_instead_of_creating_another(
    operator_settings: operator_harness.config.OperatorSettings, cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    with operator_harness.OperatorThread(operator_settings):
        uid = cluster.create(livestream("jay"))["metadata"]["uid"]
        await wait_until(lambda: cluster.pod("jay") is not None, timeout=DEADLINE_S, what="the connector pod")
    original = cluster.pod("jay")
    assert original is not None
    cluster.run_pod("jay")
    await report(redis_client, uid, ConnectorStatus(phase=ConnectorPhase.LIVE, room_id=1), {})

    with operator_harness.OperatorThread(operator_settings):
        await wait_until(
            lambda: cluster.status("jay").get("phase") == "Live",
            timeout=DEADLINE_S,
            what="the new operator to take the livestream over",
        )

    assert [pod.metadata.uid for pod in cluster.pods()] == [original.metadata.uid]


# -- two replicas -----------------------------------------------------------------------------


async def test_of_two_peered_operators_only_the_higher_priority_one_works_and_the_other_takes_over(
    api: client.ApiClient, operator_settings: operator_harness.config.OperatorSettings, cluster: Cluster
) -> None:
    operator_harness.create_peering(api, namespace=cluster.namespace, name="tiktok-operator")
    peered = operator_settings.model_copy(update={"peering_name": "tiktok-operator"})
    standby = operator_harness.OperatorThread(peered.model_copy(update={"peering_priority": 10})).start()
    try:
        with operator_harness.OperatorThread(peered.model_copy(update={"peering_priority": 20})) as active:
            await wait_until(
                lambda: len(cluster.peers("tiktok-operator")) == 2,
                timeout=DEADLINE_S,
                what="both replicas in the KopfPeering",
            )
            cluster.create(livestream("kim"))
            await wait_until(
                lambda: cluster.status("kim").get("podName") is not None,
                timeout=DEADLINE_S,
                what="the livestream to be handled",
            )
            await wait_until(
                lambda: (active.metrics.served, standby.metrics.served) == (1, 0),
                timeout=DEADLINE_S,
                what="only the higher priority replica to serve",
            )
            assert len(cluster.pods()) == 1

        cluster.create(livestream("lee"))
        await wait_until(
            lambda: cluster.pod("lee") is not None,
            timeout=DEADLINE_S,
            what="the standby to take over after the active one left",
        )
        await wait_until(lambda: standby.metrics.served == 2, timeout=DEADLINE_S, what="the standby to serve both")
        assert len(cluster.pods()) == 2
    finally:
        standby.stop()


async def test_counter_changes_alone_wait_for_the_status_interval_while_a_phase_change_goes_out_at_once(
    operator_settings: operator_harness.config.OperatorSettings, cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    settings = operator_settings.model_copy(update={"status_min_interval_s": 3600.0})
    with operator_harness.OperatorThread(settings) as running:
        registry = running.metrics.registry

        def sample(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        uid = cluster.create(livestream("max"))["metadata"]["uid"]
        await wait_until(lambda: cluster.pod("max") is not None, timeout=DEADLINE_S, what="the connector pod")
        cluster.run_pod("max")
        await report(redis_client, uid, ConnectorStatus(phase=ConnectorPhase.LIVE, room_id=1), {"tiktok.like": 5})
        await wait_until(
            lambda: (status := cluster.status("max")).get("phase") == "Live" and status.get("totalEvents") == 5,
            timeout=DEADLINE_S,
            what="Live with its counts",
        )
        patches = sample("tiktok_operator_status_patches_total")

        await report(redis_client, uid, ConnectorStatus(phase=ConnectorPhase.LIVE, room_id=1), {"tiktok.like": 9})
        passes = sample("tiktok_operator_reconciliations_total", result="ok")
        await wait_until(
            lambda: sample("tiktok_operator_reconciliations_total", result="ok") >= passes + 3,
            timeout=DEADLINE_S,
            what="three more reconcile passes",
        )

        assert cluster.status("max")["totalEvents"] == 5
        assert sample("tiktok_operator_status_patches_total") == patches

        await report(
            redis_client, uid, ConnectorStatus(phase=ConnectorPhase.RECONNECTING, room_id=1), {"tiktok.like": 9}
        )

        await wait_until(
            lambda: cluster.status("max").get("phase") == "Reconnecting", timeout=DEADLINE_S, what="the phase change"
        )
        assert cluster.status("max")["totalEvents"] == 9
