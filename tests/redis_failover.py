"""A Redis primary and a real replica behind one address that follows the primary: failover on demand.

`RedisPair` starts two `redis-server` processes (`LocalRedis`), makes the second a replica of
the first (`REPLICAOF`) and puts a TCP front door before them: clients use `url`, the way
they would use a Kubernetes Service whose endpoint a Redis operator or Sentinel moves to the
promoted replica. A failover is then the real sequence of events:

* `promote()`: `REPLICAOF NO ONE` on the replica. It stops taking the primary's stream at once
  while the old primary keeps acknowledging writes: the acknowledged tail of asynchronous
  replication that a failover loses;
* `switch()`: the front door points at the promoted replica and drops every open connection
  (clients reconnect and meet the new primary). The old primary still runs, so a test can read
  what it acknowledged, until `primary.stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import TracebackType

import redis

from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.domain.access import Role
from tiktok_service_dev.processes import free_port
from tiktok_service_dev.redis_server import LocalRedis


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


class FrontDoor:
    """A loopback TCP forwarder whose target can be switched; runs its own event loop in a thread."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="redis-front-door", daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
        finally:
            self._writers -= {writer, up_writer}

    def point_to(self, port: int) -> None:
        """New connections go to `port`; open ones are cut (their clients reconnect)."""

        async def switch() -> None:
            self._target = port
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(switch(), self._loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _admin(server: LocalRedis) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)


class RedisPair:
    """A primary, its replica and a front door that follows the primary (`url`)."""

    def __init__(self) -> None:
        self.primary = LocalRedis()
        self.replica = LocalRedis()
        self.front: FrontDoor | None = None

    @property
    def url(self) -> str:
        assert self.front is not None
        return f"redis://127.0.0.1:{self.front.port}/0"

    def start(self, timeout: float = 20) -> None:
        self.primary.start()
        self.replica.start()
        with _admin(self.primary) as primary:
            primary.config_set("repl-diskless-sync-delay", 0)  # Redis 7 waits 5 s for more replicas
        with _admin(self.replica) as replica:
            replica.replicaof("127.0.0.1", self.primary.port)
        self.front = FrontDoor(self.primary.port)
        self.wait_in_sync(timeout)

    def apply_users(self, passwords: dict[Role, str]) -> None:
        """Each component's ACL user on both nodes: ACL users are not replicated, so a promoted
        replica knows only the users set up on it (as the setup must run on every node)."""
        for server in (self.primary, self.replica):
            asyncio.run(apply_redis_users(server.url, passwords))

    def replication(self, server: LocalRedis) -> dict[str, object]:
        with _admin(server) as client:
            return dict(client.info("replication"))

    def wait_in_sync(self, timeout: float = 20) -> None:
        """Until the replica is connected and has everything the primary has."""
        deadline = time.monotonic() + timeout
        while True:
            replica = self.replication(self.replica)
            primary = self.replication(self.primary)
            if replica.get("master_link_status") == "up" and replica.get("slave_repl_offset") == primary.get(
                "master_repl_offset"
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica not in sync after {timeout}s: {replica}")
            time.sleep(0.05)

    def promote(self) -> None:
        """`REPLICAOF NO ONE`: the replica stops following; the old primary still acknowledges writes."""
        with _admin(self.replica) as replica:
            replica.replicaof("NO", "ONE")

    def switch(self) -> None:
        """Clients now reach the promoted replica (the old primary runs on, unreachable through `url`)."""
        assert self.front is not None
        self.front.point_to(self.replica.port)

    def close(self) -> None:
        if self.front is not None:
            self.front.close()
        self.primary.close()
        self.replica.close()

    def __enter__(self) -> RedisPair:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
