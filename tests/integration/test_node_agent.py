"""The local node agent behaves like a kubelet towards a real control plane.

Pods scheduled to its node run as local processes; their status, restarts and deletion
look like a kubelet's to anyone reading the API. Container commands are small
``python -c`` scripts, resolved from the venv's bin dir like our console script would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.cluster_support import started_control_plane
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.node_agent import NodeAgent, NodeAgentError
from tiktok_service_dev.ports import free_ports

pytestmark = pytest.mark.slow

T = TypeVar("T")
_POLL_S = 0.05

# Says it is ready (after installing any signal handler), then idles until killed.
SLEEPER = "import time; print('ready', flush=True); time.sleep(3600)"


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(crds=False) as cp:
        yield cp


@pytest.fixture(scope="module")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig_path))
    with api:
        yield api


@pytest.fixture(scope="module")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def agent(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    """The shared node: fast heartbeats and back-off so behaviour shows within seconds."""
    with NodeAgent(
        control_plane.kubeconfig_path,
        "agent-main",
        work_dir=tmp_path_factory.mktemp("agent-main"),
        heartbeat_interval_s=1.0,
        crash_backoff_base_s=0.5,
        crash_backoff_cap_s=2.0,
        stop_grace_s=1.0,
        watch_timeout_s=2,  # reconnects many times during the module
    ) as node_agent:
        yield node_agent


@pytest.fixture
def namespace(core: client.CoreV1Api, agent: NodeAgent) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)  # its pods are deleted gracefully, confirmed by the agent


def wait_for(value: Callable[[], T | None], *, timeout: float, what: str, details: Callable[[], str] = str) -> T:
    """Poll until ``value()`` is truthy and return it; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = value()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{details()}", pytrace=False)
        time.sleep(_POLL_S)


def python_pod(
    name: str,
    script: str,
    *,
    restart_policy: str = "Always",
    env: list[dict[str, Any]] | None = None,
    grace_s: int | None = None,
    node_selector: dict[str, str] | None = None,
    command: list[str] | None = None,
    **container: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "containers": [
            {
                "name": "main",
                "image": "ignored.example/python:3.11",
                "command": command or ["python", "-c", textwrap.dedent(script)],
                "env": env or [],
                **container,
            }
        ],
    }
    if grace_s is not None:
        spec["terminationGracePeriodSeconds"] = grace_s
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def read_pod(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def container_status(pod: client.V1Pod | None) -> client.V1ContainerStatus | None:
    if pod is None or not pod.status or not pod.status.container_statuses:
        return None
    status: client.V1ContainerStatus = pod.status.container_statuses[0]
    return status


def log_text(agent: NodeAgent, namespace: str, pod: str, container: str = "main") -> str:
    path = agent.log_path(namespace, pod, container)
    return path.read_text() if path.exists() else ""


def explain(core: client.CoreV1Api, agent: NodeAgent, namespace: str, name: str) -> Callable[[], str]:
    """Failure details: the pod's status and the container's log."""

    def details() -> str:
        pod = read_pod(core, namespace, name)
        status = pod.status.to_dict() if pod and pod.status else None
        return f"pod status: {status}\ncontainer log:\n{log_text(agent, namespace, name)}"

    return details


def wait_running(core: client.CoreV1Api, agent: NodeAgent, namespace: str, name: str) -> client.V1Pod:
    return wait_for(
        lambda: (pod := read_pod(core, namespace, name)) and pod.status.phase == "Running" and pod,
        timeout=30,
        what=f"pod {name} to run",
        details=explain(core, agent, namespace, name),
    )


def wait_logged(agent: NodeAgent, namespace: str, name: str, text: str) -> str:
    return wait_for(
        lambda: (log := log_text(agent, namespace, name)) and text in log and log,
        timeout=30,
        what=f"{text!r} in the log of {name}",
        details=lambda: log_text(agent, namespace, name),
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_of(pod: client.V1Pod) -> int:
    status = container_status(pod)
    assert status is not None and status.container_id.startswith("local://")
    return int(status.container_id.removeprefix("local://"))


def delete_and_watch_until_gone(
    core: client.CoreV1Api, namespace: str, name: str, *, grace_s: int | None = None
) -> client.V1Pod:
    """Delete the pod and return its last state as the API showed it before it disappeared."""
    resource_version = core.read_namespaced_pod(name, namespace).metadata.resource_version
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_s)
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=resource_version,
        timeout_seconds=60,
    )
    for event in stream:
        if event["type"] == "DELETED":
            pod: client.V1Pod = event["object"]
            return pod
    pytest.fail(f"pod {name} was not removed within 60s", pytrace=False)


# --------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------


def test_the_agent_registers_a_ready_node_with_its_capacity_and_labels(
    core: client.CoreV1Api, agent: NodeAgent
) -> None:
    node = core.read_node(agent.node_name)

    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    assert node.status.allocatable == {"cpu": "4", "memory": "8Gi", "pods": "110"}
    assert node.metadata.labels["kubernetes.io/hostname"] == agent.node_name
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == "local"
    assert not node.spec.taints


def test_the_agent_keeps_renewing_its_lease_and_its_ready_heartbeat(
    api_client: client.ApiClient, core: client.CoreV1Api, agent: NodeAgent
) -> None:
    leases = client.CoordinationV1Api(api_client)

    def renewed_at() -> Any:
        return leases.read_namespaced_lease(agent.node_name, "kube-node-lease").spec.renew_time

    def heartbeat() -> Any:
        node = core.read_node(agent.node_name)
        return next(c for c in node.status.conditions if c.type == "Ready").last_heartbeat_time

    first_renewal, first_heartbeat = renewed_at(), heartbeat()

    wait_for(lambda: renewed_at() > first_renewal, timeout=10, what="the lease to be renewed")
    wait_for(lambda: heartbeat() > first_heartbeat, timeout=10, what="a newer Ready heartbeat")
    lease = leases.read_namespaced_lease(agent.node_name, "kube-node-lease")
    assert lease.spec.holder_identity == agent.node_name
    assert lease.metadata.owner_references[0].kind == "Node"


# --------------------------------------------------------------------------------------
# Running pods
# --------------------------------------------------------------------------------------


def test_a_pod_runs_as_a_process_with_env_from_a_secret_a_config_map_and_the_downward_api(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}})
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"REDIS_URL": "redis://x", "MODE": "fast"}}
    )
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MEMORY_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "GREETING", "value": "hello $(POD_NAME)"},
    ]
    script = """
        import json, os, time
        names = ["TOKEN", "MODE", "CFG_REDIS_URL", "POD_NAME", "POD_NAMESPACE", "POD_UID", "APP", "NODE",
                 "POD_IP", "MEMORY_MI", "GREETING"]
        print(json.dumps({name: os.environ.get(name) for name in names}), flush=True)
        print(json.dumps({"cwd": os.getcwd(), "path": os.environ["PATH"]}), flush=True)
        time.sleep(3600)
    """
    manifest = python_pod(
        "env-reader",
        script,
        env=env,
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        resources={"limits": {"memory": "64Mi"}},
    )
    manifest["metadata"]["labels"] = {"app": "connector"}
    created = core.create_namespaced_pod(namespace, manifest)

    pod = wait_running(core, agent, namespace, "env-reader")
    log = wait_logged(agent, namespace, "env-reader", '"cwd"')

    seen, where = (json.loads(line) for line in log.splitlines()[:2])
    assert seen == {
        "TOKEN": "s3cret",
        "MODE": "fast",
        "CFG_REDIS_URL": "redis://x",
        "POD_NAME": "env-reader",
        "POD_NAMESPACE": namespace,
        "POD_UID": created.metadata.uid,
        "APP": "connector",
        "NODE": agent.node_name,
        "POD_IP": "127.0.0.1",
        "MEMORY_MI": "64",
        "GREETING": "hello env-reader",
    }
    assert where["path"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert Path(where["cwd"]).is_relative_to(agent.work_dir)
    assert pod.spec.node_name == agent.node_name
    assert (pod.status.host_ip, pod.status.pod_ip, pod.status.start_time is not None) == (
        "127.0.0.1",
        "127.0.0.1",
        True,
    )
    assert {c.type: c.status for c in pod.status.conditions} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    status = container_status(pod)
    assert status is not None
    assert (status.ready, status.restart_count, status.image) == (True, 0, "ignored.example/python:3.11")
    assert status.state.running.started_at is not None
    assert process_exists(pid_of(pod))


def test_every_container_of_a_pod_runs_with_its_own_log(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    manifest = python_pod("pair", "print('first', flush=True); import time; time.sleep(3600)")
    manifest["spec"]["containers"].append(
        {"name": "sidecar", "image": "x", "command": ["sh", "-c", "echo second; exec sleep 3600"]}
    )
    core.create_namespaced_pod(namespace, manifest)

    pod = wait_running(core, agent, namespace, "pair")
    wait_logged(agent, namespace, "pair", "first")

    assert wait_for(lambda: "second" in log_text(agent, namespace, "pair", "sidecar"), timeout=10, what="sidecar log")
    assert [s.name for s in pod.status.container_statuses if s.state.running] == ["main", "sidecar"]


def test_a_pod_that_exits_zero_with_restart_policy_never_succeeds(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, python_pod("once", "print('done')", restart_policy="Never"))

    pod = wait_for(
        lambda: (p := read_pod(core, namespace, "once")) and p.status.phase == "Succeeded" and p,
        timeout=30,
        what="the pod to succeed",
        details=explain(core, agent, namespace, "once"),
    )

    terminated = container_status(pod).state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.started_at is not None and terminated.finished_at is not None
    assert {c.type: c.reason for c in pod.status.conditions}["Ready"] == "PodCompleted"
    assert log_text(agent, namespace, "once") == "done\n"


def test_a_pod_that_exits_non_zero_with_restart_policy_never_fails(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, python_pod("broken", "raise SystemExit(3)", restart_policy="Never"))

    pod = wait_for(
        lambda: (p := read_pod(core, namespace, "broken")) and p.status.phase == "Failed" and p,
        timeout=30,
        what="the pod to fail",
        details=explain(core, agent, namespace, "broken"),
    )

    status = container_status(pod)
    assert (status.state.terminated.exit_code, status.state.terminated.reason, status.restart_count) == (3, "Error", 0)


def test_a_command_missing_from_path_fails_to_start_like_a_container_runtime_says(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace, python_pod("nocmd", "", command=["no-such-command-here"], restart_policy="Never")
    )

    pod = wait_for(
        lambda: (p := read_pod(core, namespace, "nocmd")) and p.status.phase == "Failed" and p,
        timeout=30,
        what="the pod to fail",
        details=explain(core, agent, namespace, "nocmd"),
    )

    terminated = container_status(pod).state.terminated
    assert (terminated.exit_code, terminated.reason) == (128, "StartError")
    assert "executable file not found" in terminated.message


def test_a_pod_with_restart_policy_on_failure_is_rerun_until_it_succeeds(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    # The working directory survives restarts, so the second run finds the first run's file.
    script = """
        import os, sys
        if not os.path.exists("tried"):
            open("tried", "w").close()
            sys.exit(1)
    """
    core.create_namespaced_pod(namespace, python_pod("retry", script, restart_policy="OnFailure"))

    pod = wait_for(
        lambda: (p := read_pod(core, namespace, "retry")) and p.status.phase == "Succeeded" and p,
        timeout=30,
        what="the pod to succeed on its second run",
        details=explain(core, agent, namespace, "retry"),
    )

    status = container_status(pod)
    assert (status.restart_count, status.state.terminated.exit_code) == (1, 0)
    assert status.last_state.terminated.exit_code == 1


def test_a_crashing_pod_with_restart_policy_always_backs_off_in_a_crash_loop(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, python_pod("crasher", "print('crashing', flush=True); raise SystemExit(7)"))

    def crash_looping() -> client.V1Pod | None:
        pod = read_pod(core, namespace, "crasher")
        status = container_status(pod)
        looping = (
            status is not None
            and status.restart_count >= 2
            and status.state.waiting is not None
            and status.state.waiting.reason == "CrashLoopBackOff"
        )
        return pod if looping else None

    pod = wait_for(
        crash_looping, timeout=30, what="CrashLoopBackOff", details=explain(core, agent, namespace, "crasher")
    )

    status = container_status(pod)
    assert pod.status.phase == "Running"
    assert status.last_state.terminated.exit_code == 7
    assert status.last_state.terminated.reason == "Error"
    assert "back-off" in status.state.waiting.message
    assert not status.ready
    assert log_text(agent, namespace, "crasher").count("crashing") >= status.restart_count


def test_a_container_waits_for_its_missing_secret_and_starts_once_it_exists(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]
    script = "import os, time; print(os.environ['TOKEN'], flush=True); time.sleep(3600)"
    core.create_namespaced_pod(namespace, python_pod("patient", script, env=env))

    def config_error() -> client.V1ContainerStateWaiting | None:
        status = container_status(read_pod(core, namespace, "patient"))
        waiting = status.state.waiting if status else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for(config_error, timeout=30, what="the container to wait for its secret")
    assert waiting.message == 'secret "late" not found'
    assert read_pod(core, namespace, "patient").status.phase == "Pending"
    core.create_namespaced_secret(namespace, {"metadata": {"name": "late"}, "stringData": {"token": "arrived"}})

    wait_running(core, agent, namespace, "patient")
    assert wait_logged(agent, namespace, "patient", "arrived") == "arrived\n"


# --------------------------------------------------------------------------------------
# Deleting pods
# --------------------------------------------------------------------------------------


def test_deleting_a_pod_sends_sigterm_and_the_pod_object_disappears(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "sigterm"
    script = """
        import os, signal, sys, time
        def on_term(signum, frame):
            open(os.environ["MARKER"], "w").write("SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(3600)
    """
    core.create_namespaced_pod(
        namespace, python_pod("graceful", script, env=[{"name": "MARKER", "value": str(marker)}])
    )
    pid = pid_of(wait_running(core, agent, namespace, "graceful"))
    wait_logged(agent, namespace, "graceful", "ready")

    final = delete_and_watch_until_gone(core, namespace, "graceful")

    assert marker.read_text() == "SIGTERM"
    assert read_pod(core, namespace, "graceful") is None
    assert not process_exists(pid)
    assert final.status.phase == "Succeeded"
    assert container_status(final).state.terminated.exit_code == 0


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    core: client.CoreV1Api, agent: NodeAgent, namespace: str
) -> None:
    script = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(3600)
    """
    manifest = python_pod("stubborn", script, grace_s=1, restart_policy="Never")
    # A container already done must not make the agent wait any differently for the other.
    manifest["spec"]["containers"].append({"name": "done", "image": "x", "command": ["true"]})
    core.create_namespaced_pod(namespace, manifest)
    pid = pid_of(wait_running(core, agent, namespace, "stubborn"))
    wait_logged(agent, namespace, "stubborn", "ready")
    wait_for(
        lambda: (p := read_pod(core, namespace, "stubborn")) and p.status.container_statuses[1].state.terminated,
        timeout=30,
        what="the second container to finish",
    )

    final = delete_and_watch_until_gone(core, namespace, "stubborn")

    assert not process_exists(pid)
    stubborn, done = final.status.container_statuses
    assert (stubborn.state.terminated.exit_code, stubborn.state.terminated.reason) == (137, "Error")  # 128 + SIGKILL
    assert done.state.terminated.exit_code == 0
    assert final.status.phase == "Failed"


def test_a_force_deleted_pod_has_its_process_killed(core: client.CoreV1Api, agent: NodeAgent, namespace: str) -> None:
    core.create_namespaced_pod(namespace, python_pod("forced", SLEEPER))
    pid = pid_of(wait_running(core, agent, namespace, "forced"))

    core.delete_namespaced_pod("forced", namespace, grace_period_seconds=0)

    assert read_pod(core, namespace, "forced") is None
    wait_for(lambda: not process_exists(pid), timeout=10, what=f"process {pid} to be killed")


# --------------------------------------------------------------------------------------
# Scheduling across agents, and agents going away
# --------------------------------------------------------------------------------------


def test_a_full_node_leaves_a_pod_pending_until_a_second_agent_joins(
    control_plane: ControlPlane, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    pool = {"pool": f"small-{uuid.uuid4().hex[:6]}"}  # keeps these pods off the shared node

    def small_agent(name: str) -> NodeAgent:
        return NodeAgent(
            control_plane.kubeconfig_path, name, max_pods=2, labels=pool, work_dir=tmp_path / name, stop_grace_s=0.5
        )

    with small_agent(f"{pool['pool']}-a") as first:
        for index in range(3):
            core.create_namespaced_pod(namespace, python_pod(f"p{index}", SLEEPER, node_selector=pool))

        def unschedulable() -> list[str]:
            pods = core.list_namespaced_pod(namespace).items
            running = [p for p in pods if p.status.phase == "Running"]
            stuck = [
                p.metadata.name
                for p in pods
                if p.status.phase == "Pending"
                and any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or [])
            ]
            return stuck if len(running) == 2 else []

        [pending] = wait_for(unschedulable, timeout=30, what="two pods running and one unschedulable")
        assert {p.spec.node_name for p in core.list_namespaced_pod(namespace).items if p.spec.node_name} == {
            first.node_name
        }

        with small_agent(f"{pool['pool']}-b") as second:
            pod = wait_running(core, second, namespace, pending)

            assert pod.spec.node_name == second.node_name
            for name in ["p0", "p1", "p2"]:
                core.delete_namespaced_pod(name, namespace)
            wait_for(lambda: not core.list_namespaced_pod(namespace).items, timeout=30, what="the pods to go")


def test_stopping_an_agent_kills_its_processes_and_marks_its_node_not_ready(
    control_plane: ControlPlane, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    pool = {"pool": f"doomed-{uuid.uuid4().hex[:6]}"}
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
    doomed = NodeAgent(
        control_plane.kubeconfig_path, pool["pool"], labels=pool, work_dir=tmp_path / "doomed", stop_grace_s=0.5
    ).start()
    try:
        core.create_namespaced_pod(namespace, python_pod("orphan", script, node_selector=pool))
        pid = pid_of(wait_running(core, doomed, namespace, "orphan"))
    finally:
        doomed.stop()

    assert not process_exists(pid)
    ready = next(c for c in core.read_node(doomed.node_name).status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "KubeletNotReady")
    core.delete_namespaced_pod("orphan", namespace, grace_period_seconds=0)  # no agent left to confirm


def test_a_restarted_agent_adopts_its_node_and_restarts_the_pods_it_lost(
    control_plane: ControlPlane, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    pool = {"pool": f"phoenix-{uuid.uuid4().hex[:6]}"}

    def phoenix() -> NodeAgent:
        return NodeAgent(
            control_plane.kubeconfig_path, pool["pool"], labels=pool, work_dir=tmp_path / "phoenix", stop_grace_s=0.5
        )

    with phoenix() as first:
        core.create_namespaced_pod(namespace, python_pod("survivor", SLEEPER, node_selector=pool))
        old_pid = pid_of(wait_running(core, first, namespace, "survivor"))

    with phoenix() as second:
        pod = wait_for(
            lambda: (p := read_pod(core, namespace, "survivor")) and container_status(p).restart_count == 1 and p,
            timeout=30,
            what="the pod to be restarted by the new agent",
            details=explain(core, second, namespace, "survivor"),
        )
        pod = wait_running(core, second, namespace, "survivor")

        status = container_status(pod)
        assert status.last_state.terminated.reason == "ContainerStatusUnknown"
        assert pid_of(pod) != old_pid and process_exists(pid_of(pod))
        ready = next(c for c in core.read_node(second.node_name).status.conditions if c.type == "Ready")
        assert ready.status == "True"
        delete_and_watch_until_gone(core, namespace, "survivor")


def test_deleting_a_namespace_completes_because_the_agent_confirms_its_pods_deletion(
    core: client.CoreV1Api, agent: NodeAgent
) -> None:
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    for index in range(3):
        core.create_namespaced_pod(name, python_pod(f"p{index}", SLEEPER))
    pids = [pid_of(wait_running(core, agent, name, f"p{index}")) for index in range(3)]

    core.delete_namespace(name)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(namespace_gone, timeout=60, what=f"namespace {name} to be deleted")
    assert [pid for pid in pids if process_exists(pid)] == []


def test_the_command_line_agent_serves_pods_until_sigterm(
    control_plane: ControlPlane, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    node_name = f"cli-{uuid.uuid4().hex[:6]}"
    argv = [
        sys.executable,
        "-m",
        "tiktok_service_dev.node_agent",
        f"--kubeconfig={control_plane.kubeconfig_path}",
        f"--node-name={node_name}",
        "--pods=5",
        f"--label=pool={node_name}",
        f"--work-dir={tmp_path}",
    ]
    log_file = (tmp_path / "agent.log").open("wb")
    with log_file, subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT) as agent_process:
        try:

            def node_ready() -> bool:
                try:
                    node = core.read_node(node_name)
                except ApiException:
                    return False
                return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

            wait_for(node_ready, timeout=30, what="the CLI agent's node", details=lambda: log_tail(tmp_path))
            assert core.read_node(node_name).status.allocatable["pods"] == "5"
            core.create_namespaced_pod(namespace, python_pod("served", SLEEPER, node_selector={"pool": node_name}))
            pod = wait_for(
                lambda: (p := read_pod(core, namespace, "served")) and p.status.phase == "Running" and p,
                timeout=30,
                what="the pod to run on the CLI agent",
                details=lambda: log_tail(tmp_path),
            )

            agent_process.send_signal(signal.SIGTERM)

            assert agent_process.wait(timeout=30) == 0, log_tail(tmp_path)
            assert not process_exists(pid_of(pod))
        finally:
            if agent_process.poll() is None:
                agent_process.kill()
    core.delete_namespaced_pod("served", namespace, grace_period_seconds=0)


def log_tail(directory: Path) -> str:
    return (directory / "agent.log").read_text(errors="replace")[-4000:]


def test_an_agent_that_cannot_reach_the_api_fails_to_start_with_a_clear_error(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = json.loads(control_plane.kubeconfig_path.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_ports(1)[0]}"
    unreachable = tmp_path / "kubeconfig.yaml"
    unreachable.write_text(json.dumps(kubeconfig))

    with pytest.raises(NodeAgentError, match="did not become ready") as failure:
        NodeAgent(unreachable, "lonely", work_dir=tmp_path / "lonely", startup_timeout_s=1.0).start()

    assert "could not register node lonely" in str(failure.value.__cause__)
