"""A real, throwaway Kubernetes control plane for integration tests and local development.

Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler as plain local
processes (no containers, no kubelet) on free loopback ports, with all state in a temp
directory. That is enough to exercise everything the operator does against the API:
CRUD, RBAC, watches, garbage collection, scheduling of pods onto (fake) nodes.

The binaries are built once from Go modules by ``scripts/build-controlplane.sh``
(``make controlplane``) into a cache keyed by the versions pinned in
``scripts/controlplane.env``; this module reads the same file so both sides always agree
on where the binaries live.

Usage::

    with ControlPlane(extra_users=["alice"]) as cp:
        client = kubernetes.config.new_client_from_config(config_file=str(cp.kubeconfig_path))
        ...
        alice = cp.kubeconfig_for("alice")   # authenticated, but no RBAC bindings

Or interactively: ``python -m tiktok_service_dev.controlplane``.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

from tiktok_service_dev.pki import (
    StaticToken,
    generate_service_account_keypair,
    kubeconfig_document,
    new_token,
    write_token_file,
)
from tiktok_service_dev.ports import LOOPBACK, free_ports

__all__ = [
    "BINARIES",
    "BinariesNotFoundError",
    "ControlPlane",
    "ControlPlaneError",
    "ControlPlaneStartupError",
    "Defaults",
    "Versions",
    "binaries_dir",
    "default_settings",
    "load_versions",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES: tuple[str, ...] = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ADMIN_USER = "admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_POLL_INTERVAL_S = 0.1
_LOG_TAIL_LINES = 40
_PORT_CONFLICT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """Base class for control-plane problems."""


class BinariesNotFoundError(ControlPlaneError):
    """The cached binaries are missing: the user must run ``make controlplane`` first."""


class ControlPlaneStartupError(ControlPlaneError):
    """A component exited or did not become ready in time; the message has its log tail."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(f"{message}\n--- last log lines ---\n{log_tail}" if log_tail else message)
        self.log_tail = log_tail

    @property
    def port_conflict(self) -> bool:
        """True when the failure is the (rare) race for a port we picked as free."""
        return "address already in use" in self.log_tail.lower()


# --------------------------------------------------------------------------------------
# Versions, defaults and binary lookup
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Versions:
    """Pinned component versions, as written in ``scripts/controlplane.env``."""

    kubernetes: str
    etcd: str

    @property
    def key(self) -> str:
        """Cache directory name; must match ``VERSION_KEY`` in the build script."""
        return f"kubernetes-{self.kubernetes}_etcd-{self.etcd}"


@dataclass(frozen=True)
class Defaults:
    """Every environment-dependent default, computed in one place (``default_settings``)."""

    cache_dir: Path
    versions_file: Path


def default_settings() -> Defaults:
    """Defaults mirroring the build script: ``${CACHE_DIR:-$HOME/.cache/tiktok-service}``."""
    cache = os.environ.get("CACHE_DIR") or str(Path.home() / ".cache" / "tiktok-service")
    return Defaults(cache_dir=Path(cache), versions_file=REPO_ROOT / "scripts" / "controlplane.env")


def load_versions(path: Path | None = None) -> Versions:
    """Parse the ``KEY=VALUE`` versions file shared with the build script."""
    path = path or default_settings().versions_file
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    try:
        return Versions(kubernetes=values["KUBERNETES_VERSION"], etcd=values["ETCD_VERSION"])
    except KeyError as exc:
        raise ControlPlaneError(f"{path} does not define {exc.args[0]}") from None


def binaries_dir(cache_dir: Path | None = None, versions: Versions | None = None) -> Path:
    """Directory holding the cached control-plane binaries, or a clear error if not built."""
    defaults = default_settings()
    versions = versions or load_versions(defaults.versions_file)
    directory = (cache_dir or defaults.cache_dir) / "controlplane" / versions.key / "bin"
    missing = [name for name in BINARIES if not os.access(directory / name, os.X_OK)]
    if missing:
        raise BinariesNotFoundError(
            f"Kubernetes control-plane binaries not found in {directory} (missing: {', '.join(missing)}). "
            "Run `make controlplane` to build them (about 7 minutes, once)."
        )
    return directory


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def _die_with_parent_hook() -> Callable[[], None] | None:
    """``preexec_fn`` that makes the kernel SIGKILL the child when we die.

    Without it a SIGKILLed pytest would leak ~500 MB of etcd/apiserver processes. SIGKILL,
    not SIGTERM: all components get the signal at once, and a kube-apiserver whose etcd
    vanished mid graceful-shutdown was observed to hang for minutes; the state is
    throwaway anyway. Only used on Linux from the main thread: PDEATHSIG fires when the
    *forking thread* exits. ``prctl`` is resolved here, in the parent, so the child runs
    no imports or lookups.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    signum = int(signal.SIGKILL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)

    return hook


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16_384))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def exited(self) -> bool:
        return self.process.poll() is not None

    def stop(self, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL: graceful, but never hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


# --------------------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler in a temp dir.

    Authentication is a static token file: ``admin`` (group ``system:masters``) plus one
    token per name in ``extra_users`` with *no* groups, so tests can grant them exactly
    the RBAC they need. The token file is read once at startup, hence users are declared
    up front rather than added later.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        extra_users: Sequence[str] = (),
        work_dir_parent: Path | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        wait_for_controllers: bool = True,
        keep_work_dir: bool = False,
        service_account_tokens: bool = False,
    ) -> None:
        """Configure, without starting anything.

        ``bin_dir`` defaults to the cached build (``binaries_dir()``), resolved in
        ``start`` so a missing build surfaces as a clear error there.
        ``wait_for_controllers`` also waits until kube-controller-manager has published
        ``kube-root-ca.crt``, i.e. its controllers are really running.
        ``service_account_tokens`` keeps the ServiceAccount admission plugin, so pods get a
        projected service-account token (for a real kubelet, which mounts it).
        """
        if ADMIN_USER in extra_users or len(set(extra_users)) != len(extra_users):
            raise ValueError(f"extra_users must be unique and must not contain {ADMIN_USER!r}")
        self._bin_dir = bin_dir
        self._extra_users = tuple(extra_users)
        self._work_dir_parent = work_dir_parent
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._wait_for_controllers = wait_for_controllers
        self._keep_work_dir = keep_work_dir
        self._service_account_tokens = service_account_tokens
        self._components: list[_Component] = []
        self._work_dir: Path | None = None
        self._tokens: dict[str, StaticToken] = {}
        self._apiserver_port: int | None = None
        self._kubeconfigs: dict[str, Path] = {}
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start all components and block until the API answers ``/readyz``.

        On any failure (including Ctrl-C) everything already started is stopped before
        the exception propagates, so a failed start never leaks processes.
        """
        if self._components:
            raise ControlPlaneError("control plane already started")
        bin_dir = self._bin_dir or binaries_dir()
        began = time.monotonic()
        atexit.register(self.stop)
        try:
            for attempt in range(1, _PORT_CONFLICT_ATTEMPTS + 1):
                try:
                    self._start_once(bin_dir)
                    break
                except ControlPlaneStartupError as exc:
                    self._teardown()
                    if not exc.port_conflict or attempt == _PORT_CONFLICT_ATTEMPTS:
                        raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop components in reverse start order and delete the temp dir. Idempotent."""
        atexit.unregister(self.stop)
        self._teardown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _teardown(self) -> None:
        # Scheduler and controller-manager first (they would only log errors while the
        # apiserver goes away), etcd last (the apiserver flushes to it on shutdown).
        while self._components:
            self._components.pop().stop(self._stop_timeout)
        if self._work_dir is not None and not self._keep_work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = None
        self._apiserver_port = None
        self._kubeconfigs.clear()

    # -- public accessors ----------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        """Temp dir with logs (``*.log``), etcd data, keys and kubeconfigs."""
        if self._work_dir is None:
            raise ControlPlaneError("control plane is not running")
        return self._work_dir

    @property
    def server_url(self) -> str:
        if self._apiserver_port is None:
            raise ControlPlaneError("control plane is not running")
        return f"https://{LOOPBACK}:{self._apiserver_port}"

    @property
    def ca_cert_path(self) -> Path:
        """The apiserver's self-signed serving cert bundle (also contains its CA)."""
        return self.work_dir / "certs" / "apiserver.crt"

    @property
    def kubeconfig_path(self) -> Path:
        """Kubeconfig for ``admin`` (``system:masters``)."""
        return self.kubeconfig_for(ADMIN_USER)

    @property
    def admin_token(self) -> str:
        return self.token_for(ADMIN_USER)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running components, e.g. for resource measurements."""
        return {component.name: component.process.pid for component in self._components}

    def token_for(self, user: str) -> str:
        """Bearer token of ``admin`` or one of ``extra_users``."""
        try:
            return self._tokens[user].token
        except KeyError:
            raise ControlPlaneError(f"unknown user {user!r}; declare it with ControlPlane(extra_users=[...])") from None

    def kubeconfig_for(self, user: str) -> Path:
        """Write (once) and return a kubeconfig authenticating as ``user``."""
        if user in self._kubeconfigs:
            return self._kubeconfigs[user]
        token = self.token_for(user)
        document = kubeconfig_document(
            server=self.server_url,
            ca_data_b64=base64.b64encode(self.ca_cert_path.read_bytes()).decode(),
            user=user,
            token=token,
        )
        path = self.work_dir / f"kubeconfig-{user}.yaml"
        path.write_text(json.dumps(document, indent=2))  # JSON is valid YAML
        path.chmod(0o600)
        self._kubeconfigs[user] = path
        return path

    def raise_if_exited(self) -> None:
        """Raise ``ControlPlaneError`` (with log tail) if any component has died."""
        for component in self._components:
            if component.exited():
                raise ControlPlaneStartupError(
                    f"{component.name} exited with code {component.process.returncode}",
                    log_tail=_log_tail(component.log_path),
                )

    # -- startup -------------------------------------------------------------------------

    def _start_once(self, bin_dir: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix="tiktok-controlplane-", dir=self._work_dir_parent))
        self._work_dir = work
        certs = work / "certs"
        certs.mkdir()
        sa_key, sa_pub = work / "sa.key", work / "sa.pub"
        generate_service_account_keypair(sa_key, sa_pub)

        self._tokens = {ADMIN_USER: StaticToken(new_token(), ADMIN_USER, ADMIN_USER, ("system:masters",))}
        for user in self._extra_users:
            self._tokens[user] = StaticToken(new_token(), user, user)
        token_file = work / "tokens.csv"
        write_token_file(token_file, list(self._tokens.values()))

        etcd_client, etcd_peer, apiserver_port = free_ports(3)

        etcd_url = f"http://{LOOPBACK}:{etcd_client}"
        peer_url = f"http://{LOOPBACK}:{etcd_peer}"
        etcd = self._spawn(
            "etcd",
            bin_dir / "etcd",
            [
                "--name=default",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: durability buys nothing, fsync costs seconds
            ],
        )
        self._wait(etcd, lambda: _http_ok(f"{etcd_url}/health"), "etcd /health")

        apiserver = self._spawn(
            "kube-apiserver",
            bin_dir / "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={apiserver_port}",
                f"--advertise-address={LOOPBACK}",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={certs}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={token_file}",
                # The node agent mounts no tokens, and its pods must not wait for the SA controller.
                *([] if self._service_account_tokens else ["--disable-admission-plugins=ServiceAccount"]),
                "--allow-privileged=true",
                # Logs and exec reach a kubelet at its node IP (test nodes have no resolvable name).
                "--kubelet-preferred-address-types=InternalIP",
            ],
        )
        self._apiserver_port = apiserver_port
        self._wait(apiserver, self._apiserver_ready, "kube-apiserver /readyz")

        kubeconfig = str(self.kubeconfig_path)
        client_flags = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
        ]
        controller_manager = self._spawn(
            "kube-controller-manager",
            bin_dir / "kube-controller-manager",
            [
                *client_flags,
                "--controllers=*",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_cert_path}",
            ],
        )
        self._spawn("kube-scheduler", bin_dir / "kube-scheduler", client_flags)
        if self._wait_for_controllers:
            self._wait(
                controller_manager,
                lambda: self._api_ok("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
                "kube-controller-manager to publish kube-root-ca.crt",
            )
        self.raise_if_exited()

    def _spawn(self, name: str, binary: Path, args: list[str]) -> _Component:
        log_path = self.work_dir / f"{name}.log"
        log_file = log_path.open("wb")
        try:
            process = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                # Own session: a terminal Ctrl-C reaches only us, and we stop children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        except BaseException:
            log_file.close()
            raise
        component = _Component(name, process, log_path, log_file)
        self._components.append(component)
        return component

    def _wait(self, component: _Component, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until true; fail fast if any component exits, or at the deadline."""
        deadline = time.monotonic() + self._startup_timeout
        while not ready():
            self.raise_if_exited()
            if time.monotonic() > deadline:
                raise ControlPlaneStartupError(
                    f"timed out after {self._startup_timeout:.0f}s waiting for {what}",
                    log_tail=_log_tail(component.log_path),
                )
            time.sleep(_POLL_INTERVAL_S)

    def _apiserver_ready(self) -> bool:
        # The serving cert appears in --cert-dir shortly after the process starts.
        return self.ca_cert_path.exists() and self._api_ok("/readyz")

    def _api_ok(self, path: str) -> bool:
        try:
            context = ssl.create_default_context(cafile=str(self.ca_cert_path))
        except ssl.SSLError:  # the API server is still writing its serving certificate
            return False
        return _http_ok(f"{self.server_url}{path}", token=self.admin_token, context=context)


def _http_ok(url: str, *, token: str | None = None, context: ssl.SSLContext | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):  # URLError/HTTPError/ssl errors are OSErrors
        return False


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run a control plane in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tiktok_service_dev.controlplane",
        description="Run a local Kubernetes control plane (etcd, apiserver, controller-manager, scheduler).",
    )
    parser.add_argument(
        "--extra-user",
        action="append",
        default=[],
        metavar="NAME",
        help="also create a token user NAME with no groups (repeatable)",
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--keep-work-dir", action="store_true", help="keep logs and data after stopping")
    args = parser.parse_args(argv)

    try:
        bin_dir = binaries_dir()
    except BinariesNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    with ControlPlane(
        bin_dir=bin_dir,
        extra_users=args.extra_user,
        startup_timeout=args.startup_timeout,
        keep_work_dir=args.keep_work_dir,
    ) as cp:
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        print(f"control plane ready in {cp.startup_seconds:.1f}s at {cp.server_url}")
        print(f"work dir (logs): {cp.work_dir}")
        print(f"kubectl:         {bin_dir / 'kubectl'}")
        for user in args.extra_user:
            print(f"kubeconfig for {user}: {cp.kubeconfig_for(user)}")
        print(f"kubeconfig:      {cp.kubeconfig_path}")
        print(f"export KUBECONFIG={cp.kubeconfig_path}", flush=True)
        while not stop_requested.wait(1.0):
            try:
                cp.raise_if_exited()
            except ControlPlaneError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        print("stopping control plane ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
