"""A throwaway Redis server on a free loopback port (Debian's `redis-server`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tiktok_service_dev import processes


class LocalRedis:
    """Runs `redis-server` without persistence in a temp dir; can be stopped and restarted
    on the same port, which is how tests simulate a Redis outage."""

    def __init__(self, *, port: int | None = None, binary: str = "redis-server") -> None:
        self.port = port or processes.free_port()
        self._binary = shutil.which(binary) or binary
        self._dir = Path(tempfile.mkdtemp(prefix="tiktok-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = self._dir / "redis.log"
        acl_file = self._dir / "users.acl"
        acl_file.touch()  # `ACL SAVE` (tiktok-service access) keeps the role users here across restarts
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            # An append-only file like a production Redis, so a restart keeps the streams.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(self._dir),
            "--logfile",
            str(log),
            "--aclfile",
            str(acl_file),
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            processes.wait_for(lambda: self._ready(), timeout=timeout, what=f"redis on port {self.port}")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{processes.log_tail(log)}") from exc

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
        return processes.port_open(self.port)

    def stop(self) -> None:
        processes.terminate(self._proc)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
