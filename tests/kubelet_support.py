"""A real Kubernetes node for the end-to-end tests: containerd + runc + a bridge CNI + a kubelet.

Everything lives in a temp dir and on a network bridge the fixture creates (an address in
10.213.0.0/16 that no other interface uses): the node's IP is the bridge's address, pods get
their own network namespace on the bridge, and the services pods talk to (Redis, the simulator)
listen on that address. No traffic leaves the machine; nothing is pulled (the pause image and
the product image are imported into containerd).

Test-only shortcuts, each on purpose: the kubelet authenticates to the API server as the
control plane's admin and serves its own API (logs, exec) to anonymous callers with
AlwaysAllow, on the bridge address only. Needs root (containerd, network namespaces, cgroups):
`node_prerequisites()` says what is missing.

The kubelet and the pause image are built by `scripts/build-kubelet.sh` (`make kubelet`);
containerd, runc and the CNI plugins are Debian packages (`make deps`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.node_runtime import (
    CNI_BIN_DIR,
    Containerd,
    NodeUnavailableError,
    cni_config,
    host_bridge,
    node_cgroup,
    terminate,
    wait_running,
)
from tiktok_service_dev.controlplane import SERVICE_CLUSTER_IP_RANGE, ControlPlane, default_settings, load_versions
from tiktok_service_dev.ports import free_ports

__all__ = [
    "KubeletNode",
    "NodeBuild",
    "NodeUnavailableError",
    "build_product_image",
    "heartbeat_after",
    "node_build",
    "node_prerequisites",
    "qualified_image",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DOMAIN = "cluster.local"
_POLL_S = 0.1


def heartbeat_after(heartbeat: str, stopped: float) -> bool:
    """Whether a node condition's `lastHeartbeatTime` was written after `stopped` (a Unix time).

    The API keeps that time in whole seconds (RFC 3339, truncated): a heartbeat of the old kubelet
    written in the very second `stopped` falls in, shows the same second as one the new kubelet
    writes later in it. Only a heartbeat of a later second is surely the new kubelet's; with
    `nodeStatusUpdateFrequency` of 2 s the next one comes within about 3 s."""
    seen = dt.datetime.fromisoformat(heartbeat.replace("Z", "+00:00")).timestamp()
    return seen >= math.floor(stopped) + 1


@dataclass(frozen=True)
class NodeBuild:
    """The cached outputs of `scripts/build-kubelet.sh`."""

    kubelet: Path
    pause_archive: Path
    pause_image: str


def _env_values(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        key, sep, value = raw.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value
    return values


def node_build() -> NodeBuild:
    """Where the build script put the kubelet and the pause image (same keys as the script)."""
    defaults = default_settings()
    versions = load_versions(defaults.versions_file)
    pause_source = REPO_ROOT / "scripts" / "pause" / "main.go"
    pause_hash = hashlib.sha256(pause_source.read_bytes()).hexdigest()[:12]
    build = NodeBuild(
        kubelet=defaults.cache_dir / "kubelet" / f"kubernetes-{versions.kubernetes}" / "bin" / "kubelet",
        pause_archive=defaults.cache_dir / "pause" / pause_hash / "pause.tar",
        pause_image=_env_values(defaults.versions_file)["PAUSE_IMAGE"],
    )
    if not os.access(build.kubelet, os.X_OK) or not build.pause_archive.is_file():
        raise NodeUnavailableError(
            f"kubelet or pause image not built ({build.kubelet}, {build.pause_archive}): run `make kubelet`"
        )
    return build


def node_prerequisites() -> str | None:
    """Why a real node cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "a real kubelet and containerd need root"
    missing = [tool for tool in ("containerd", "ctr", "runc", "ip") if shutil.which(tool) is None]
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.append(f"{CNI_BIN_DIR}/bridge")
    if missing:
        return f"missing {', '.join(missing)}: run `make deps`"
    return None


# -- the kubelet -----------------------------------------------------------------------------------


def kubelet_config(
    *,
    work: Path,
    address: str,
    port: int,
    healthz_port: int,
    runtime_socket: Path,
    cgroup_root: str = "/",
    cluster_dns: str | None = None,
) -> dict[str, object]:
    """KubeletConfiguration for a test node on a cgroup v1 host without swap accounting; with
    `cluster_dns`, pods get it as nameserver and the cluster's search path (`cluster.local`)."""
    dns: dict[str, object] = {"clusterDNS": [cluster_dns], "clusterDomain": CLUSTER_DOMAIN} if cluster_dns else {}
    return {
        **dns,
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # Test only: the API server reaches logs/exec without a client certificate.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "podLogsDir": str(work / "pod-logs"),
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        # A busy shared disk must not make the node evict the pods under test.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "5s",
    }


class KubeletNode:
    """The node: a bridge, containerd and a kubelet registered as `name` with `control_plane`."""

    def __init__(
        self, control_plane: ControlPlane, name: str, *, build: NodeBuild | None = None, cluster_dns: str | None = None
    ) -> None:
        self.control_plane = control_plane
        self.cluster_dns = cluster_dns
        self.node_name = name
        self.build = build or node_build()
        self.work = Path(tempfile.mkdtemp(prefix=f"tiktok-node-{name}-"))
        self.bridge = f"tkt{os.getpid() % 100000}"
        self.address: ipaddress.IPv4Interface | None = None
        self.containerd: Containerd | None = None
        self.kubelet_log = self.work / "kubelet.log"
        self._kubelet: subprocess.Popen[bytes] | None = None
        self._stack = contextlib.ExitStack()
        self._cgroup_root = "/"
        self._ports: tuple[int, int] | None = None  # (port, healthz): kept across restarts

    @property
    def ip(self) -> str:
        """The node's address: pods reach services listening here."""
        assert self.address is not None, "node not started"
        return str(self.address.ip)

    def start(self, timeout: float = 90) -> KubeletNode:
        try:
            self.address = self._stack.enter_context(host_bridge(self.bridge))
            # Removed after containerd stopped (the stack unwinds in reverse).
            self._cgroup_root = self._stack.enter_context(node_cgroup(f"tiktok-node-{self.bridge}"))
            cni_dir = self.work / "net.d"
            cni_dir.mkdir()
            # The Service range through the bridge: a relay on the node may stand in for kube-proxy.
            network = cni_config(
                bridge=self.bridge,
                address=self.address,
                ipam_dir=self.work / "ipam",
                routes=[SERVICE_CLUSTER_IP_RANGE],
            )
            (cni_dir / "10-tiktok-e2e.conflist").write_text(json.dumps(network, indent=1))
            self.containerd = Containerd(
                self.work / "containerd", pause_image=self.build.pause_image, cni_conf_dir=cni_dir
            )
            self.containerd.start()
            self._stack.callback(self.containerd.stop)
            self.containerd.import_archive(self.build.pause_archive)
            self._start_kubelet(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_kubelet(self, timeout: float) -> None:
        self._spawn_kubelet()
        self._stack.callback(self._stop_kubelet)
        self._wait_kubelet(self._ready, f"node {self.node_name} Ready", timeout)

    def _spawn_kubelet(self, config_overrides: dict[str, object] | None = None) -> None:
        assert self.containerd is not None
        if self._ports is None:
            port, healthz = free_ports(2)
            self._ports = (port, healthz)
        port, healthz = self._ports
        config = kubelet_config(
            work=self.work,
            address=self.ip,
            port=port,
            healthz_port=healthz,
            runtime_socket=self.containerd.socket,
            cgroup_root=self._cgroup_root,
            cluster_dns=self.cluster_dns,
        )
        config.update(config_overrides or {})
        config_path = self.work / "kubelet.json"
        config_path.write_text(json.dumps(config, indent=1))
        with self.kubelet_log.open("ab") as log:
            self._kubelet = subprocess.Popen(
                [
                    str(self.build.kubelet),
                    f"--config={config_path}",
                    f"--kubeconfig={self.control_plane.kubeconfig_path}",
                    f"--hostname-override={self.node_name}",
                    f"--node-ip={self.ip}",
                    f"--root-dir={self.work / 'kubelet'}",
                    f"--cert-dir={self.work / 'pki'}",
                    "--v=1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_kubelet(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        assert self._kubelet is not None
        wait_running(condition, what=what, timeout=timeout, process=self._kubelet, log=self.kubelet_log)

    def restart(self, config_overrides: dict[str, object] | None = None, timeout: float = 90) -> None:
        """Stop the kubelet alone and start it again with `config_overrides` merged into its config.

        The pods' containers keep running in containerd meanwhile (as across a kubelet upgrade),
        and the restarted kubelet adopts them. Returns once it answers on its healthz port and
        has reported the node's status since it started (so the conditions are its own).
        """
        assert self._kubelet is not None, "node not started"
        terminate(self._kubelet)
        started = time.time()
        self._spawn_kubelet(config_overrides)
        self._wait_kubelet(lambda: self._reported_since(started), f"node {self.node_name} reported again", timeout)

    def _reported_since(self, started: float) -> bool:
        ready = self.condition("Ready")
        if ready is None or ready.get("status") != "True" or not ready.get("lastHeartbeatTime"):
            return False
        return heartbeat_after(str(ready["lastHeartbeatTime"]), started)

    def node(self) -> dict[str, Any]:
        """The Node object as the API server has it."""
        return json.loads(self.kubectl("get", "node", self.node_name, "-o", "json").stdout)  # type: ignore[no-any-return]

    def condition(self, type_: str) -> dict[str, Any] | None:
        """The node's condition `type_` (Ready, MemoryPressure, DiskPressure...), None when absent."""
        conditions = self.node().get("status", {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == type_), None)

    def taints(self) -> list[str]:
        """The node's taints as `key:effect`."""
        return [f"{t['key']}:{t['effect']}" for t in self.node().get("spec", {}).get("taints") or []]

    def _ready(self) -> bool:
        jsonpath = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        done = self.kubectl("get", "node", self.node_name, "-o", jsonpath, check=False)
        return done.stdout.strip() == "True"

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """kubectl as the control plane's admin."""
        argv = [str(_kubectl()), f"--kubeconfig={self.control_plane.kubeconfig_path}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def _drain(self, timeout: float = 60) -> None:
        """Delete the node's pods and wait for their containers to stop, so the kubelet tears down
        their sandboxes (network namespaces, veths, mounts) before it goes."""
        if self._kubelet is None or self._kubelet.poll() is not None or self.containerd is None:
            return
        selector = f"spec.nodeName={self.node_name}"
        self.kubectl("delete", "pods", "-A", "--field-selector", selector, "--grace-period=0", "--force", check=False)
        deadline = time.monotonic() + timeout
        while self.containerd.task_pids() and time.monotonic() < deadline:
            time.sleep(_POLL_S * 5)

    def _stop_kubelet(self) -> None:
        with contextlib.suppress(Exception):
            self._drain()
        if self._kubelet is not None and self._kubelet.poll() is None:
            terminate(self._kubelet)
        self._kubelet = None

    def stop(self) -> None:
        """Kubelet, then containers and containerd, then mounts and the bridge; the temp dir goes last."""
        self._stack.close()
        _unmount_under(self.work)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> KubeletNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests look at -------------------------------------------------------------------

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """The newest log file of `container` in `pod` (kubelet layout: <ns>_<pod>_<uid>/<container>/N.log)."""
        found = sorted(
            (self.work / "pod-logs").glob(f"{namespace}_{pod}_*/{container}/*.log"), key=lambda p: p.stat().st_mtime
        )
        return found[-1] if found else self.work / "pod-logs" / f"{namespace}_{pod}" / container / "0.log"

    def host_pid(self, container_id: str) -> int:
        """Host PID of a container from the pod status (`containerd://<id>`)."""
        assert self.containerd is not None
        return self.containerd.task_pids()[container_id.removeprefix("containerd://")]


def _kubectl() -> Path:
    from tiktok_service_dev.controlplane import binaries_dir

    return binaries_dir() / "kubectl"


def _unmount_under(root: Path) -> None:
    """Lazily unmount what the kubelet and containerd left mounted under `root` (deepest first)."""
    prefix = str(root.resolve()) + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def build_product_image(image: str) -> str:
    """Build `image` with `scripts/build-image.sh` (podman here; cached layers make it quick) and
    return its full name in podman's storage, which is the name it gets in containerd."""
    env = {**os.environ, "IMAGE": image, "CONTAINER_ENGINE": "podman"}
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-image.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"image build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return qualified_image(image)


def qualified_image(image: str) -> str:
    """The name podman stores a locally built `image` under (`tiktok-service:test` -> `localhost/...`)."""
    first = image.split("/", 1)[0]
    qualified = "/" in image and ("." in first or ":" in first or first == "localhost")
    return image if qualified else f"localhost/{image}"
