"""A throwaway PostgreSQL server on a free loopback port (Debian's `postgresql` package).

`initdb` takes seconds, so it runs once into a template cluster under the user cache;
each instance copies the template (~0.2 s). PostgreSQL refuses to run as root, so when we
are root the server runs as the `postgres` system user (the child process itself switches
user, so signals reach the postmaster directly).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from tiktok_service_dev import processes

SUPERUSER = "tiktok"
DATABASE = "tiktok"
#: The superuser (the owner: migrations, tests' inspection) connects without a password;
#: every other role proves its password (SCRAM), as the components' logins do in production.
_HBA = f"""\
local all {SUPERUSER} trust
host  all {SUPERUSER} 127.0.0.1/32 trust
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
"""


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin dir (Debian keeps them versioned)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if not candidates:
        raise RuntimeError("PostgreSQL server not installed: run `make deps` (Debian package postgresql)")
    return Path(candidates[-1]).parent


def _version_key(path: str) -> int:
    return int(Path(path).parent.parent.name.split(".")[0])


def _as_server_user() -> dict[str, Any]:
    """Popen arguments that run the child as `postgres` when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": [], "env": {**os.environ, "HOME": "/tmp"}}


def _chown_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


def _template_dir(cache_dir: Path, bin_dir: Path) -> Path:
    """Create (once) an initdb'd cluster to copy from; keyed by the server version."""
    version = bin_dir.parent.name
    template = cache_dir / f"pg-template-{version}"
    if (template / "PG_VERSION").exists():
        return template
    cache_dir.mkdir(parents=True, exist_ok=True)
    # initdb runs as the server user, who may not be able to enter the user's home: build
    # under /tmp, then move the finished cluster into the cache.
    scratch = Path(tempfile.mkdtemp(prefix="pg-template-"))
    scratch.chmod(0o755)
    building = scratch / "data"
    building.mkdir()
    _chown_to_server_user(building)
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(building),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd="/tmp",
        **_as_server_user(),
    )
    partial = Path(tempfile.mkdtemp(prefix="pg-template-", dir=cache_dir))
    shutil.copytree(building, partial / "data")
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):  # another process won the race; theirs is as good as ours
        (partial / "data").rename(template)
    shutil.rmtree(partial, ignore_errors=True)
    return template


class LocalPostgres:
    """A PostgreSQL cluster in a temp dir: trust auth on 127.0.0.1, fsync off (tests/dev)."""

    def __init__(self, *, port: int | None = None, cache_dir: Path | None = None, host: str | None = None) -> None:
        """`host`: an extra listen address (e.g. a test node's bridge), where every role, the
        superuser too, proves its password, from any address of that subnet (`samenet`)."""
        self.port = port or processes.free_port()
        self.host = host
        self._bin = postgres_bin_dir()
        self._cache_dir = cache_dir or Path.home() / ".cache" / "tiktok-service"
        self._root = Path(tempfile.mkdtemp(prefix="tiktok-pg-"))
        self._data = self._root / "data"
        self._proc: subprocess.Popen[bytes] | None = None
        self._created = False

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float = 30.0) -> None:
        if self.running:
            return
        if not self._created:
            shutil.copytree(_template_dir(self._cache_dir, self._bin), self._data)
            extra = "" if self.host is None else "host  all all samenet scram-sha-256\n"
            (self._root / "pg_hba.conf").write_text(_HBA + extra)
            os.chmod(self._root, 0o755)
            self._data.chmod(0o700)
            _chown_to_server_user(self._root)
        log = self._root / "postgres.log"
        log_handle = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self._proc = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                "-D",
                str(self._data),
                "-p",
                str(self.port),
                "-k",
                str(self._root),
                "-c",
                "listen_addresses=127.0.0.1" + ("" if self.host is None else f",{self.host}"),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                f"hba_file={self._root / 'pg_hba.conf'}",
            ],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            cwd="/tmp",
            **_as_server_user(),
        )
        log_handle.close()
        try:
            processes.wait_for(self._ready, timeout=timeout, what=f"postgres on port {self.port}")
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n{processes.log_tail(log)}") from exc
        if not self._created:
            subprocess.run(
                [str(self._bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, DATABASE],
                check=True,
            )
            self._created = True

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {self._proc.returncode}")
        result = subprocess.run(
            [str(self._bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        )
        return result.returncode == 0

    def stop(self) -> None:
        # SIGTERM = "smart" shutdown waits for clients; SIGINT = "fast" disconnects them.
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(2)
        processes.terminate(self._proc, timeout=15)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
