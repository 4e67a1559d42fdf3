"""Operator at 1,000 Livestreams against the best the API server can do: 1,000 direct pod creates.

    python -m benchmarks.operator_bench [--livestreams 1000] [--parallel 16]

Starts a real control plane (etcd, kube-apiserver, controller-manager, scheduler; no node,
so pods stay Pending/Unschedulable, which is all this needs) and a Redis, then measures:

(a) baseline: 1,000 pods of exactly the operator's shape (`desired.desired_pod`, minus the
    owner reference, which would let the garbage collector delete them) created directly,
    `--parallel` requests at a time; timed until a watch has seen all of them; then deleted.
(b) the operator (`tiktok-service operator` in its own process, so its RSS is its own,
    production defaults, no database) and 1,000 Livestreams applied with the same
    parallelism; timed until a watch has seen 1,000 connector pods. The operator's RSS is
    read from /proc once every Livestream shows a status (peak = VmHWM).

Prints one line per figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from kubernetes import client, config, watch

from tiktok_service.operator import desired, model
from tiktok_service.settings import OperatorSettings
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.ports import free_ports
from tiktok_service_dev.redis_server import LocalRedis

NAMESPACE: Final = "bench"
OPERATOR_USER: Final = "operator"
PEERING: Final = "tiktok-operator"
PODS_SELECTOR: Final = f"{model.LABEL_NAME}={model.CONNECTOR_APP}"
DEADLINE_S: Final = 600.0
_WATCH_S: Final = 2
_WRITES: Final = frozenset({"POST", "PATCH", "PUT", "DELETE", "APPLY", "CREATE", "UPDATE"})


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = DEADLINE_S, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class PodCounter:
    """Counts connector pods as a watch sees them added (cheaper than listing 1,000 pods in a loop)."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self._core = core
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        listing = core.list_namespaced_pod(NAMESPACE, label_selector=PODS_SELECTOR, limit=1)
        self._resource_version = listing.metadata.resource_version
        self._thread = threading.Thread(target=self._run, name="pod-counter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():  # short watches, so that stop() returns within seconds
            stream = watch.Watch().stream(
                self._core.list_namespaced_pod,
                NAMESPACE,
                label_selector=PODS_SELECTOR,
                resource_version=self._resource_version,
                timeout_seconds=_WATCH_S,
            )
            for event in stream:
                pod = event["object"]
                self._resource_version = pod.metadata.resource_version
                if event["type"] == "ADDED":
                    with self._lock:
                        self._names.add(pod.metadata.name)

    @property
    def seen(self) -> int:
        with self._lock:
            return len(self._names)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(_WATCH_S + 5)


def run_parallel(calls: list[Callable[[], object]], parallel: int) -> None:
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def baseline_pod(index: int, settings: OperatorSettings) -> dict[str, Any]:
    """A connector pod as the operator would build it, for a Livestream that does not exist."""
    livestream = {
        "metadata": {
            "name": f"direct-{index:04d}",
            "namespace": NAMESPACE,
            "uid": str(uuid.UUID(int=index)),
        },
        "spec": {"username": f"direct_{index:04d}"},
    }
    pod = desired.desired_pod(livestream, settings)
    del pod["metadata"]["ownerReferences"]
    return pod


def livestream(index: int) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": f"bench-{index:04d}"},
        "spec": {"username": f"bench_{index:04d}"},
    }


def measure_direct(core: client.CoreV1Api, settings: OperatorSettings, count: int, parallel: int) -> float:
    pods = [baseline_pod(index, settings) for index in range(count)]
    counter = PodCounter(core)
    try:
        started = time.perf_counter()
        run_parallel([lambda pod=pod: core.create_namespaced_pod(NAMESPACE, pod) for pod in pods], parallel)
        wait_for(lambda: counter.seen >= count, what=f"{count} direct pods", every=0.01)
        elapsed = time.perf_counter() - started
    finally:
        counter.stop()
    core.delete_collection_namespaced_pod(NAMESPACE, label_selector=PODS_SELECTOR, grace_period_seconds=0)
    wait_for(
        lambda: not core.list_namespaced_pod(NAMESPACE, label_selector=PODS_SELECTOR, limit=1).items,
        what="the direct pods to be deleted",
    )
    return elapsed


def measure_operator(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, count: int, parallel: int
) -> tuple[float, float]:
    """Seconds until `count` connector pods exist, and until the last Livestream was created."""
    counter = PodCounter(core)
    try:
        started = time.perf_counter()
        run_parallel(
            [
                lambda index=index: custom.create_namespaced_custom_object(
                    model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, livestream(index)
                )
                for index in range(count)
            ],
            parallel,
        )
        applied = time.perf_counter() - started
        wait_for(lambda: counter.seen >= count, what=f"{count} connector pods from the operator", every=0.01)
        return time.perf_counter() - started, applied
    finally:
        counter.stop()


def with_status(custom: client.CustomObjectsApi) -> int:
    found = custom.list_namespaced_custom_object(model.GROUP, model.VERSION, NAMESPACE, model.PLURAL)
    return sum(1 for item in found["items"] if (item.get("status") or {}).get("phase"))


def cpu_s(pids: Mapping[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        used[name] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def cpu_spent(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    return " ".join(f"{name}={after[name] - before[name]:.1f}" for name in after)


def request_counts(cp: ControlPlane) -> Counter[str]:
    """The API server's own count of write requests so far, by resource and verb (from /metrics)."""
    context = ssl.create_default_context(cafile=str(cp.ca_cert_path))
    request = urllib.request.Request(f"{cp.server_url}/metrics", headers={"Authorization": f"Bearer {cp.admin_token}"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in _WRITES:
            key = f"{labels.get('resource')}{'/' + labels['subresource'] if labels.get('subresource') else ''}"
            counts[f"{labels['verb']} {key}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def requests_made(before: Counter[str], after: Counter[str]) -> str:
    spent = after - before
    return " ".join(f"{key}={value}" for key, value in sorted(spent.items()))


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0]) / 1024
    return values


@contextlib.contextmanager
def operator_process(kubeconfig: Path, redis_url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`tiktok-service operator` with production defaults, serving only the bench namespace."""
    (http_port,) = free_ports(1)
    env: Mapping[str, str] = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPERATOR_KUBECONFIG": str(kubeconfig),
        "OPERATOR_NAMESPACES": f'["{NAMESPACE}"]',
        "OPERATOR_REDIS_URL": redis_url,
        "OPERATOR_PEERING_NAME": PEERING,
        "OPERATOR_HTTP_PORT": str(http_port),
        "OPERATOR_LOG_LEVEL": "WARNING",
    }
    script = Path(sys.executable).parent / "tiktok-service"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(script), "operator"], env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or healthy(http_port), what="the operator's /healthz", timeout=60)
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited with {process.returncode}; see {log_path}")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def run(count: int, parallel: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="operator-bench-"))  # the operator's log; kept if the run fails
    with ControlPlane(extra_users=[OPERATOR_USER]) as cp, LocalRedis() as redis_server:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(cp.kubeconfig_path), client_configuration=configuration)
        configuration.connection_pool_maxsize = parallel + 2
        with client.ApiClient(configuration) as api:
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            operator_harness.install_crds(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
            operator_harness.grant_role(api, namespace=NAMESPACE, user=OPERATOR_USER)
            operator_harness.create_peering(api, namespace=NAMESPACE, name=PEERING)
            settings = OperatorSettings(redis_url=redis_server.url)

            before, requests = cpu_s(cp.pids), request_counts(cp)
            direct_s = measure_direct(core, settings, count, parallel)
            direct_cpu = cpu_spent(before, cpu_s(cp.pids))
            direct_requests = requests_made(requests, request_counts(cp))

            log_path = work / "operator.log"
            with operator_process(cp.kubeconfig_for(OPERATOR_USER), redis_server.url, log_path) as operator:
                pids = {**cp.pids, "operator": operator.pid}
                before, requests = cpu_s(pids), request_counts(cp)
                operator_s, applied_s = measure_operator(core, custom, count, parallel)
                operator_cpu = cpu_spent(before, cpu_s(pids))
                operator_requests = requests_made(requests, request_counts(cp))
                wait_for(lambda: with_status(custom) >= count, what=f"{count} Livestreams with a status", every=2.0)
                memory = memory_mb(operator.pid)
    shutil.rmtree(work)

    print(
        f"operator_pods_{count}_s={operator_s:.2f} direct_pods_{count}_s={direct_s:.2f} "
        f"ratio={operator_s / direct_s:.2f} (target <= 2)",
        flush=True,
    )
    print(f"livestreams_{count}_applied_s={applied_s:.2f} (part of the operator's time)", flush=True)
    print(f"cpu_s direct: {direct_cpu}", flush=True)
    print(f"cpu_s operator: {operator_cpu}", flush=True)
    print(f"writes direct (incl. the deletion): {direct_requests}", flush=True)
    print(f"writes operator (until {count} pods): {operator_requests}", flush=True)
    print(f"operator_rss_mb={memory['VmHWM']:.0f} with {count} livestreams (target <= 300)", flush=True)
    print(f"operator_rss_now_mb={memory['VmRSS']:.0f} with {count} livestreams, every status written", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--livestreams", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=16, help="concurrent create requests, both runs")
    args = parser.parse_args()
    run(args.livestreams, args.parallel)


if __name__ == "__main__":
    main()
