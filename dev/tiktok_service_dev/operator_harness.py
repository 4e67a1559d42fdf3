"""Harness for the operator in tests, benchmarks and the dev flow (like `kopf.testing`).

`OperatorThread` runs the real operator (`run_operator`) in a thread with its own event
loop, so a test can drive the cluster with the synchronous `kubernetes` client while the
operator reacts; `install_crds`, `apply` and `grant_role` prepare a control plane the way
`kubectl apply -f tiktok_service/crds/ -f deploy/` would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from tiktok_service import crds
from tiktok_service.operator.metrics import OperatorMetrics
from tiktok_service.settings import OperatorSettings
from tiktok_service_dev import event_loops

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY_DIR: Final = REPO_ROOT / "deploy"
EXAMPLES_DIR: Final = REPO_ROOT / "examples"
DEFAULT_DEADLINE_S: Final = 30.0


def manifests(*paths: Path) -> list[dict[str, Any]]:
    """Every YAML document of the given files (or of every `*.yaml` in a given folder)."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            docs += [doc for doc in yaml.safe_load_all(file.read_text()) if doc]
    return docs


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = DEFAULT_DEADLINE_S) -> None:
    """Poll `condition` until it holds; raise naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def apply(api: client.ApiClient, docs: Iterable[Mapping[str, Any]], *, namespace: str | None = None) -> None:
    """Create each object (namespaced ones in `namespace` when given); existing ones are replaced."""
    dyn = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    for doc in docs:
        body = dict(doc)
        resource = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        kwargs: dict[str, Any] = {}
        if resource.namespaced:
            body["metadata"] = {**body["metadata"], "namespace": namespace or body["metadata"].get("namespace")}
            kwargs["namespace"] = body["metadata"]["namespace"]
        try:
            resource.create(body=body, **kwargs)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = resource.get(name=body["metadata"]["name"], **kwargs)
            body["metadata"]["resourceVersion"] = current.metadata.resourceVersion
            resource.replace(body=body, **kwargs)


def install_crds(api: client.ApiClient, *, timeout: float = DEFAULT_DEADLINE_S) -> None:
    """Apply the product's CRDs (package data) and wait until the API server serves every one of them."""
    docs = crds.manifests()
    apply(api, docs)
    extensions = client.ApiextensionsV1Api(api)

    def established() -> bool:
        for doc in docs:
            crd = extensions.read_custom_resource_definition(doc["metadata"]["name"])
            conditions = {c.type: c.status for c in ((crd.status and crd.status.conditions) or [])}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_for(established, what="the CRDs to be established", timeout=timeout)


def grant_role(api: client.ApiClient, *, namespace: str, user: str) -> None:
    """Bind the operator's Role from `deploy/` (and nothing else) to `user` in `namespace`."""
    roles = [
        doc for doc in manifests(DEPLOY_DIR) if doc["kind"] == "Role" and doc["metadata"]["name"] == "tiktok-operator"
    ]
    apply(api, roles, namespace=namespace)
    bindings = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{role['metadata']['name']}-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
        for role in roles
    ]
    apply(api, bindings, namespace=namespace)


def create_peering(api: client.ApiClient, *, namespace: str, name: str) -> None:
    apply(api, [{"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}}], namespace=namespace)


def quick_settings(
    *, kubeconfig: Path, namespace: str, redis_url: str, database_url: str | None, **overrides: object
) -> OperatorSettings:
    """Settings that make the operator react within a second (short resync, no rate limit)."""
    values: dict[str, object] = {
        "kubeconfig": kubeconfig,
        "namespaces": [namespace],
        "redis_url": redis_url,
        "database_url": database_url,
        "peering_name": None,
        "resync_interval_s": 0.5,
        "status_min_interval_s": 0.0,
        "http_port": 0,
        "connector_image": "tiktok-service:test",
    }
    values.update(overrides)
    return OperatorSettings.model_validate(values)


class OperatorThread:
    """The real operator in a background thread; `with OperatorThread(settings):` runs it."""

    def __init__(self, settings: OperatorSettings, *, startup_timeout: float = DEFAULT_DEADLINE_S) -> None:
        self.settings = settings
        self._startup_timeout = startup_timeout
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)
        self._error: BaseException | None = None
        self.exit_code: int | None = None
        self.metrics = OperatorMetrics(CollectorRegistry())

    def _main(self) -> None:
        from tiktok_service.operator import main

        try:
            # Not asyncio.run: its loop closes with kopf's TLS watch connections still closing.
            self.exit_code = event_loops.run(
                main.run_operator(self.settings, stop_flag=self._stop, ready_flag=self._ready, metrics=self.metrics)
            )
        except BaseException as exc:  # surfaced to the test by stop()/start()
            self._error = exc

    def start(self) -> Self:
        self._thread.start()
        wait_for(
            lambda: self._ready.is_set() or not self._thread.is_alive(),
            what="the operator to start",
            timeout=self._startup_timeout,
        )
        if not self._thread.is_alive():
            self.stop()
        return self

    def stop(self, timeout: float = DEFAULT_DEADLINE_S) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the operator did not stop within {timeout:.0f}s")
        if self._error is not None:
            raise AssertionError(f"the operator crashed: {self._error!r}") from self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
