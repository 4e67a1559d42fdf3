"""The container runtime side of the test node: its network bridge and containerd.

The bridge takes the first address of a free /24 in 10.213.0.0/16 (the node IP and the pods'
gateway; no NAT): pods reach services listening there, and nothing leaves the machine.
containerd runs with its own root, state and socket in a temp dir, its CRI plugin configured
for this kind of host (see README "Real kubelet, real containers"). Used by
`tests/kubelet_support.py`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

CNI_BIN_DIR = Path("/usr/lib/cni")
_SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")
_POLL_S = 0.1
_LOG_TAIL_LINES = 40


class NodeUnavailableError(RuntimeError):
    """Something the node needs is missing; the message says how to get it."""


def run(*argv: str, timeout: float = 60, stdin: int | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=stdin)
    if done.returncode != 0:
        raise NodeUnavailableError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
    except OSError:
        return "(no log)"


def wait_running(
    condition: Callable[[], bool], *, what: str, timeout: float, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise NodeUnavailableError(f"{what}: exited with {process.returncode}\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise NodeUnavailableError(f"timed out after {timeout:.0f}s waiting for {what}\n{log_tail(log)}")
        time.sleep(_POLL_S)


def terminate(process: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if `process` is still there after `grace_s`; returns once it is reaped."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the bridge ------------------------------------------------------------------------------------


def _used_networks() -> list[ipaddress.IPv4Network]:
    found = []
    for entry in json.loads(run("ip", "-j", "-4", "addr")):
        for info in entry.get("addr_info", []):
            found.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return found


def pick_subnet(used: list[ipaddress.IPv4Network], seed: int) -> ipaddress.IPv4Network:
    """A /24 of 10.213.0.0/16 that overlaps nothing in `used`, starting from `seed` (pure)."""
    candidates = list(_SUBNETS.subnets(new_prefix=24))
    for offset in range(len(candidates)):
        subnet = candidates[(seed + offset) % len(candidates)]
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NodeUnavailableError(f"no free /24 left in {_SUBNETS}")


@contextlib.contextmanager
def host_bridge(name: str) -> Iterator[ipaddress.IPv4Interface]:
    """A Linux bridge with the first address of a free /24 (the node IP and the pods' gateway)."""
    subnet = pick_subnet(_used_networks(), os.getpid())
    address = ipaddress.IPv4Interface(f"{next(subnet.hosts())}/{subnet.prefixlen}")
    run("ip", "link", "add", name, "type", "bridge")
    try:
        run("ip", "addr", "add", str(address), "dev", name)
        run("ip", "link", "set", name, "up")
        yield address
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


# -- containerd ------------------------------------------------------------------------------------


def containerd_config(work: Path, *, pause_image: str, cni_conf_dir: Path) -> str:
    """containerd 1.6's defaults, plus what this kind of host needs (see README "Real kubelet")."""
    return f"""version = 2
root = "{work / "root"}"
state = "{work / "state"}"
[grpc]
  address = "{work / "containerd.sock"}"
[ttrpc]
  address = "{work / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # Without it every sandbox fails with "can't get final child's PID from pipe: EOF": runc
  # may not lower the OOM score adjustment it inherited.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
"""


def cni_config(
    *, bridge: str, address: ipaddress.IPv4Interface, ipam_dir: Path, routes: Sequence[str] = ()
) -> dict[str, object]:
    """Pods on `bridge`, addressed from its /24, routed through the bridge's address (no NAT);
    `routes`: more destinations the pods reach through the bridge (the Service range)."""
    return {
        "cniVersion": "1.0.0",
        "name": "tiktok-e2e",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(address.network), "gateway": str(address.ip)}]],
                    "dataDir": str(ipam_dir),
                    "routes": [{"dst": route} for route in routes],
                },
            }
        ],
    }


class Containerd:
    """containerd with its own config, state and socket under `work`."""

    def __init__(self, work: Path, *, pause_image: str, cni_conf_dir: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.socket = work / "containerd.sock"
        self.log_path = work / "containerd.log"
        self.config_path = work / "config.toml"
        self.config_path.write_text(containerd_config(work, pause_image=pause_image, cni_conf_dir=cni_conf_dir))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                ["containerd", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_running(
            lambda: self.socket.exists() and self._answers(),
            what="containerd",
            timeout=timeout,
            process=self._process,
            log=self.log_path,
        )

    def _answers(self) -> bool:
        return subprocess.run(self._ctr("version"), capture_output=True, check=False).returncode == 0

    def _ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]

    def ctr(self, *args: str, timeout: float = 60) -> str:
        return run(*self._ctr(*args), timeout=timeout)

    def import_archive(self, archive: Path) -> None:
        self.ctr("images", "import", str(archive), timeout=300)

    def import_from_podman(self, image: str) -> None:
        """`podman save | ctr images import -`: the image under the name podman gives it."""
        with subprocess.Popen(["podman", "save", "--format", "docker-archive", image], stdout=subprocess.PIPE) as save:
            try:
                run(*self._ctr("images", "import", "-"), timeout=300, stdin=save.stdout.fileno())  # type: ignore[union-attr]
            finally:
                save.stdout.close()  # type: ignore[union-attr]
        if save.returncode != 0:
            raise NodeUnavailableError(f"podman save {image} failed ({save.returncode})")

    def task_pids(self) -> dict[str, int]:
        """container id -> host PID of every running task."""
        pids = {}
        for line in self.ctr("tasks", "ls").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "RUNNING":
                pids[fields[0]] = int(fields[1])
        return pids

    def stop(self) -> None:
        """Kill every task, then containerd (its shims go with their tasks)."""
        if self._process is None:
            return
        with contextlib.suppress(NodeUnavailableError, subprocess.TimeoutExpired):
            for container in self.task_pids():
                subprocess.run(self._ctr("tasks", "kill", "-s", "SIGKILL", container), capture_output=True, check=False)
                subprocess.run(self._ctr("tasks", "delete", "-f", container), capture_output=True, check=False)
        terminate(self._process)
        self._process = None


# -- the node's own cgroup -------------------------------------------------------------------------

CGROUP_MOUNT = Path("/sys/fs/cgroup")


@contextlib.contextmanager
def node_cgroup(name: str, mount: Path = CGROUP_MOUNT) -> Iterator[str]:
    """A cgroup `/<name>` in every mounted hierarchy, for the kubelet's `cgroupRoot`.

    Two kubelets under the same root (two test nodes at once) each take the other's pod cgroups
    for orphans and kill their processes (exit 137): each node gets a root of its own. Removed
    deepest first on exit, once the kubelet and containerd are gone.
    """
    hierarchies = [path for path in sorted(mount.iterdir()) if path.is_dir() and os.path.ismount(path)]
    if not hierarchies and os.path.ismount(mount):
        hierarchies = [mount]  # cgroup v2 only
    created = []
    try:
        for hierarchy in hierarchies:
            own = hierarchy / name
            own.mkdir(exist_ok=True)
            created.append(own)
            for inherited in ("cpuset.cpus", "cpuset.mems"):  # an empty cpuset cgroup takes no task
                if (own / inherited).exists() and not (own / inherited).read_text().strip():
                    (own / inherited).write_text((hierarchy / inherited).read_text())
        yield f"/{name}"
    finally:
        for own in created:
            for path in sorted((p for p in own.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                own.rmdir()
