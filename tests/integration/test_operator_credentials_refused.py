"""The operator once the API server refuses its credentials: said clearly, no spin, prompt exit.

`helm uninstall` deletes the operator's ServiceAccount (its token stops working at once)
while the operator pod is being terminated. The operator runs as a real process here with
a real ServiceAccount token (TokenRequest) against a real API server, in a peering (so
that stopping writes to the API server: kopf removes the replica from the KopfPeering).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.cluster_support import started_control_plane
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.processes import free_port, log_tail, terminate, wait_for

pytestmark = pytest.mark.slow

PEERING = "tiktok-operator"
#: Far below the 30 s grace period after which the kubelet sends SIGKILL.
EXIT_DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(wait_for_controllers=False) as cp:
        yield cp


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as api:
        yield api


def service_account_kubeconfig(cp: ControlPlane, api: client.ApiClient, namespace: str, path: Path) -> Path:
    """A namespace, a ServiceAccount allowed everything (authorization is not what is tested) and its token."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "operator"}})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"{namespace}-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
        }
    )
    operator_harness.create_peering(api, namespace=namespace, name=PEERING)
    issued = core.create_namespaced_service_account_token("operator", namespace, {"spec": {"expirationSeconds": 3600}})
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
        "clusters": [
            {"name": "c", "cluster": {"server": cp.server_url, "certificate-authority": str(cp.ca_cert_path)}}
        ],
        "users": [{"name": "sa", "user": {"token": issued.status.token}}],
    }
    path.write_text(yaml.safe_dump(document))
    return path


class OperatorProcess:
    """`tiktok-service operator` as its own process (signals reach kopf as in a pod)."""

    def __init__(self, kubeconfig: Path, namespace: str, redis_url: str, log: Path) -> None:
        self.port = free_port()
        self.kubeconfig = kubeconfig
        self.log = log
        env = {
            **os.environ,
            "OPERATOR_KUBECONFIG": str(kubeconfig),
            "OPERATOR_NAMESPACES": json.dumps([namespace]),
            "OPERATOR_PEERING_NAME": PEERING,
            "OPERATOR_PEERING_PRIORITY": "10",
            "OPERATOR_PEERING_LIFETIME_S": "5",  # a peering keep-alive (an API write) every second
            "OPERATOR_REDIS_URL": redis_url,
            "OPERATOR_HTTP_PORT": str(self.port),
            "OPERATOR_LOG_LEVEL": "INFO",
        }
        env.pop("OPERATOR_DATABASE_URL", None)
        env.pop("DATABASE_URL", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tiktok_service", "operator"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())
        except OSError:
            return 0, {}

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"{name} not exported")

    def wait(self, condition: Any, what: str, timeout: float = 60.0) -> None:
        def holds() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the operator exited ({self.process.returncode}):\n{log_tail(self.log, 60)}")
            return bool(condition())

        try:
            wait_for(holds, timeout=timeout, what=what, interval=0.1)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{log_tail(self.log, 60)}") from None

    def stop_within(self, deadline_s: float) -> float:
        """SIGTERM; the seconds it took to exit (fails the test past the deadline, after killing it)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(deadline_s)
        except subprocess.TimeoutExpired:
            terminate(self.process, timeout=1)
            pytest.fail(
                f"the operator ignored SIGTERM for {deadline_s:.0f}s with its credentials refused:\n"
                f"{log_tail(self.log, 40)}"
            )
        return time.monotonic() - started


def token_refused(cp: ControlPlane, kubeconfig: Path) -> bool:
    """The API server answers 401 to the token (it caches accepted tokens for a few seconds)."""
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    request = urllib.request.Request(f"{cp.server_url}/version", headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=str(cp.ca_cert_path))
    try:
        with urllib.request.urlopen(request, timeout=5, context=context):
            return False
    except urllib.error.HTTPError as refused:
        return refused.code == 401


def in_peering(api: client.ApiClient, namespace: str) -> bool:
    peering = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kopf.dev", "v1", namespace, "kopfpeerings", PEERING
    )
    return bool(peering.get("status") or {})


@pytest.fixture
def operator_process(
    control_plane: ControlPlane, api: client.ApiClient, redis_url: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, str]]:
    namespace = f"creds-{uuid.uuid4().hex[:8]}"
    kubeconfig = service_account_kubeconfig(control_plane, api, namespace, tmp_path / "kubeconfig")
    operator = OperatorProcess(kubeconfig, namespace, redis_url, tmp_path / "operator.log")
    try:
        operator.wait(lambda: operator.health()[0] == 200, "the operator's /healthz")
        operator.wait(lambda: in_peering(api, namespace), "the operator in the KopfPeering")
        yield operator, namespace
    finally:
        terminate(operator.process, timeout=1)


def test_sigterm_once_the_service_account_is_deleted(
    control_plane: ControlPlane, api: client.ApiClient, operator_process: tuple[OperatorProcess, str]
) -> None:
    """What `helm uninstall` does: the ServiceAccount goes, then SIGTERM; the operator leaves at once."""
    operator, namespace = operator_process
    client.CoreV1Api(api).delete_namespaced_service_account("operator", namespace)
    wait_for(
        lambda: token_refused(control_plane, operator.kubeconfig), timeout=60, what="the token refused", interval=0.2
    )

    took = operator.stop_within(EXIT_DEADLINE_S)

    assert operator.process.returncode == 0, log_tail(operator.log, 40)
    assert took < EXIT_DEADLINE_S
    print(f"\nexited {took:.2f} s after SIGTERM with its credentials refused")


def test_refused_credentials_are_reported_then_sigterm_is_prompt(
    api: client.ApiClient, operator_process: tuple[OperatorProcess, str]
) -> None:
    """Running with a deleted ServiceAccount: unhealthy, counted, logged, retried with backoff; SIGTERM honoured."""
    operator, namespace = operator_process
    deleted_at = time.monotonic()
    client.CoreV1Api(api).delete_namespaced_service_account("operator", namespace)

    operator.wait(lambda: operator.health()[0] == 503, "/healthz to fail with the credentials refused")
    assert operator.health()[1].get("credentials") == "refused"
    assert operator.metric("tiktok_operator_credentials_refused") == 1
    operator.wait(
        lambda: operator.metric("tiktok_operator_logins_refused_total") >= 3, "a few refused logins (backoff)"
    )
    refusals = operator.metric("tiktok_operator_logins_refused_total")
    elapsed = time.monotonic() - deleted_at
    # Backoff doubles from 1 s: n refusals need 2**(n-1) - 1 s; a spin would make hundreds.
    assert refusals <= 3 + int(elapsed).bit_length(), (refusals, elapsed)
    assert "API server refused the operator's credentials" in operator.log.read_text()

    took = operator.stop_within(EXIT_DEADLINE_S)

    assert operator.process.returncode == 0, log_tail(operator.log, 40)
    assert took < EXIT_DEADLINE_S
    print(f"\nexited {took:.2f} s after SIGTERM with its credentials refused")
