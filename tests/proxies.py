"""Real proxies for tests: tinyproxy (HTTP CONNECT, BasicAuth) and microsocks (SOCKS5, user/password).

Each runs from the Debian package's binary (`make deps`) on a free loopback port, with its
own configuration and log in a temporary directory; nothing touches the system's
configuration and nothing reaches the internet. Their own logs are the proof of what went
through them.

Host names: a proxy resolves the names its clients ask for. To let a client reach the
simulator under TikTok's own names (so cookies set for `.tiktok.com` are sent, as they are
to TikTok), a proxy can be started with `hosts={"www.tiktok.com": "127.0.0.1"}`: it then
runs in a private mount namespace (`unshare`) where /etc/hosts is a file of ours, bind-mounted
over the system's for that process only.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import pytest

from tiktok_service_dev.processes import free_port, log_tail, port_open, terminate, wait_for

#: TikTok's names, resolved to the simulator's loopback address by a proxy started with `hosts=TIKTOK_HOSTS`.
TIKTOK_HOSTS = {"www.tiktok.com": "127.0.0.1", "webcast.tiktok.com": "127.0.0.1"}


def namespaces_available() -> bool:
    """Whether a process can get its own /etc/hosts (unshare with a private mount namespace)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make deps` (scripts/install-deps.sh)")
    return path


class LocalProxy:
    """A proxy process on 127.0.0.1:<free port>; `url()` carries the credentials."""

    scheme = ""

    def __init__(self, workdir: Path, *, username: str, password: str, hosts: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password
        self.hosts = hosts
        self.port = free_port()
        self.log_path = workdir / "proxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"{self.scheme}://{quote(self.username, safe='')}:{quote(secret, safe='')}@127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        command = self.command()
        if self.hosts:
            hosts_file = self.workdir / "hosts"
            lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for name, address in self.hosts.items()]
            hosts_file.write_text("\n".join(lines) + "\n")
            command = [
                "unshare",
                "--mount",
                "--map-root-user",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(hosts_file),
                *command,
            ]
        output = (self.workdir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        output.close()
        try:
            wait_for(lambda: port_open(self.port) or self._exited(), timeout=10, what=f"{self.scheme} proxy")
        except TimeoutError:
            self.stop()
            raise
        if self._exited():
            raise RuntimeError(f"proxy exited at start:\n{log_tail(self.workdir / 'stdout.log')}")

    def _exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def stop(self) -> None:
        terminate(self._proc, timeout=5)
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._exited()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> LocalProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class TinyProxy(LocalProxy):
    """HTTP proxy: forwards plain-HTTP requests (absolute URIs) and tunnels CONNECT, with BasicAuth."""

    scheme = "http"

    def command(self) -> list[str]:
        binary = require_binary("tinyproxy")
        config = self.workdir / "tinyproxy.conf"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "Listen 127.0.0.1",
                    "Timeout 600",
                    f'LogFile "{self.log_path}"',
                    "LogLevel Connect",
                    "MaxClients 100",
                    "DisableViaHeader Yes",
                    f"BasicAuth {self.username} {self.password}",
                    "",
                ]
            )
        )
        return [binary, "-d", "-c", str(config)]

    def requests(self) -> list[str]:
        """Request lines it received: `GET http://host:port/path ...`, `CONNECT host:port ...`."""
        return [line.split("): ", 1)[1] for line in self.log().splitlines() if "Request (file descriptor" in line]


class MicroSocks(LocalProxy):
    """SOCKS5 proxy with username/password authentication; logs each connection it opens."""

    scheme = "socks5"

    def __init__(self, workdir: Path, *, username: str, password: str, hosts: dict[str, str] | None = None) -> None:
        super().__init__(workdir, username=username, password=password, hosts=hosts)
        self.log_path = workdir / "stdout.log"

    def command(self) -> list[str]:
        binary = require_binary("microsocks")
        command = [binary, "-i", "127.0.0.1", "-p", str(self.port), "-u", self.username, "-P", self.password]
        stdbuf = shutil.which("stdbuf")
        return [stdbuf, "-o0", *command] if stdbuf else command

    def connections(self) -> list[str]:
        """Destinations it connected clients to: `host:port`."""
        return [line.rsplit(" to ", 1)[1] for line in self.log().splitlines() if ": connected to " in line]
