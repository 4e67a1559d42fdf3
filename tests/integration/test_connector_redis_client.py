"""The connector's Redis client against real `redis-server`s: commands, ACL users, TLS, outages.

Each server is started by the test (Debian's redis-server, TLS certificates made with openssl
as an operator would make them); what the client wrote is read back with redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support import wait_until
from tiktok_service.connector.redis_client import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    RedisClient,
    RedisConnectionError,
    RedisOutOfMemoryError,
    RedisTimeoutError,
    ReplyError,
)
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service_dev import processes
from tiktok_service_dev.redis_server import LocalRedis


@contextlib.contextmanager
def redis_server(*args: str, port: int | None = None) -> Iterator[int]:
    """A throwaway redis-server with extra arguments; yields the port it was asked to listen on."""
    port = port or processes.free_port()
    directory = Path(tempfile.mkdtemp(prefix="tiktok-redis-client-"))
    listen = list(args) if "--tls-port" in args else ["--port", str(port), *args]
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--save", "", "--dir", str(directory), *listen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        processes.wait_for(lambda: processes.port_open(port), timeout=10, what="redis-server")
        yield port
    finally:
        processes.terminate(proc)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[RedisClient]:
    redis = RedisClient.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_connector_commands_do_what_redis_py_reads_back(redis_url: str, redis_client: aioredis.Redis) -> None:
    async with client(redis_url) as redis:
        assert await redis.get("rc:missing") is None
        await redis.transaction(["HSET", "rc:status", "phase", "Live", "room_id", "42"], ("EXPIRE", "rc:status", 60))
        assert await redis_client.hgetall("rc:status") == {b"phase": b"Live", b"room_id": b"42"}
        assert 0 < await redis_client.ttl("rc:status") <= 60
        for n in range(3):
            await redis_client.xadd("rc:stream", {"id": str(n), "event": "{}"})
        newest = await redis.xrevrange("rc:stream", count=2)
        assert [fields[b"id"] for _, fields in newest] == [b"2", b"1"]
        assert newest == (await redis_client.xrevrange("rc:stream", count=2))


async def test_a_script_unknown_to_the_server_is_loaded_then_run_by_its_digest_as_the_connector_user(
    redis_roles: dict[Role, str], redis_client: aioredis.Redis
) -> None:
    """The connector's ACL user has EVALSHA and SCRIPT LOAD, not EVAL: a flushed cache is loaded again."""
    key = naming.event_counts_key("rc-script")
    async with client(redis_roles[Role.CONNECTOR]) as redis:
        script = redis.register_script("return redis.call('HINCRBY', KEYS[1], 'n', ARGV[1])")
        await redis_client.script_flush()  # as after a restart, or a failover to a new primary
        assert await script(keys=[key], args=[5]) == 5  # NOSCRIPT, SCRIPT LOAD, EVALSHA
        assert (await redis_client.script_exists(script.sha)) == [True]
        assert await script(keys=[key], args=[2]) == 7  # EVALSHA
        await redis_client.script_flush()
        wait = ("WAIT", 0, 0)
        with pytest.raises(NoScriptError):  # in a pipeline: every reply read, the first error raised
            await redis.pipeline(script.command([key], [1]), wait)
        await script.load()
        assert await redis.pipeline(script.command([key], [1]), wait) == [8, 0]
        assert await redis.ping()


async def test_a_full_redis_is_told_apart_from_other_error_replies(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    async with client(redis_url) as redis:
        await redis_client.config_set("maxmemory", 1)
        try:
            with pytest.raises(RedisOutOfMemoryError, match="OOM"):
                await redis.transaction(("HSET", "rc:full", "a", "1"))
            with pytest.raises(RedisOutOfMemoryError):
                await redis.execute("SET", "rc:full", "1")
        finally:
            await redis_client.config_set("maxmemory", 0)
        assert await redis.execute("SET", "rc:full", "1") == b"OK"


async def test_an_error_reply_is_raised_and_the_connection_stays_usable(redis_url: str) -> None:
    async with client(redis_url) as redis:
        script = redis.register_script("return redis.error_reply('FENCED stale epoch')")
        with pytest.raises(ReplyError, match="FENCED"):
            await script(keys=["rc:x"])
        await redis.transaction(("HSET", "rc:typed", "a", "1"))
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            await redis.get("rc:typed")
        assert await redis.ping()


async def test_an_acl_user_with_its_password_gets_in_and_a_wrong_password_is_told_apart() -> None:
    with redis_server("--requirepass", "admin-pw") as port:
        admin = aioredis.Redis(port=port, password="admin-pw")
        await admin.acl_setuser("connector", enabled=True, passwords=["+c0nn/ector"], keys=["ls:*"], commands=["+@all"])
        await admin.aclose()
        async with client(f"redis://connector:c0nn%2Fector@127.0.0.1:{port}/3") as redis:
            await redis.transaction(("HSET", "ls:status", "phase", "Live"))
            assert await redis.ping()
        async with client(f"redis://:admin-pw@127.0.0.1:{port}/0") as redis:
            assert await redis.get("ls:status") is None  # database 0, not the user's database 3
        async with client(f"redis://connector:wrong@127.0.0.1:{port}/0") as redis:
            with pytest.raises(AuthenticationError) as refused:
                await redis.ping()
            assert isinstance(refused.value, ConnectionError)  # retried like an outage
            assert "wrong" not in str(refused.value)


@pytest.fixture(scope="module")
def tls_files() -> Iterator[tuple[Path, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="tiktok-redis-tls-"))
    cert, key = directory / "redis.crt", directory / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield cert, key
    shutil.rmtree(directory, ignore_errors=True)


async def test_tls_with_the_operator_s_ca_is_verified_and_used(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    port = processes.free_port()
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    with redis_server(*args, "--tls-auth-clients", "no", port=port):
        async with client(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}") as redis:
            await redis.transaction(("HSET", "ls:tls", "phase", "Live"))
            assert await redis.ping()
        async with client(f"rediss://127.0.0.1:{port}/0") as redis:  # a CA the system does not trust
            with pytest.raises(RedisConnectionError, match="certificate"):
                await redis.ping()
        async with client(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none") as redis:
            assert await redis.ping()


async def test_tls_with_a_client_certificate(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    port = processes.free_port()
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    with redis_server(*args, "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "yes", port=port):
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        async with client(f"{url}&ssl_certfile={cert}&ssl_keyfile={key}") as redis:
            assert await redis.ping()
        async with client(url) as redis:
            with pytest.raises(RedisConnectionError):
                await redis.ping()


async def test_after_an_outage_the_next_command_reconnects() -> None:
    with LocalRedis() as server:
        async with client(server.url) as redis:
            assert await redis.ping()
            server.stop()
            with pytest.raises(RedisConnectionError):
                await redis.ping()
            server.start()

            async def answers() -> bool:
                try:
                    return await redis.ping()
                except RedisConnectionError:  # still loading its append-only file: retried, not fatal
                    return False

            await wait_until(answers, timeout=10, what="Redis answering again")


async def test_a_redis_still_loading_its_data_is_an_outage_not_an_error() -> None:
    async def loading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(loading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client(f"redis://127.0.0.1:{port}/0") as redis:
            with pytest.raises(BusyLoadingError) as busy:
                await redis.get("ls:seq")
            assert isinstance(busy.value, ConnectionError)  # the publisher retries it
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out_and_the_connection_is_dropped() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read()  # reads the command, never answers, until the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        redis = RedisClient.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, socket_connect_timeout=1)
        with pytest.raises(RedisTimeoutError) as timed_out:
            await redis.ping()
        assert isinstance(timed_out.value, TimeoutError)
        with pytest.raises(RedisTimeoutError):
            await redis.ping()
        assert len(connections) == 2  # the first connection, its reply pending, was not reused
        await redis.aclose()
    finally:
        server.close()
        await server.wait_closed()
