"""The connector verifies Redis' certificate against the CA bundle it is given (real TLS Redis)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from tiktok_service.connector.redis_client import RedisClient, redis_options
from tiktok_service.connector.redis_client import RedisConnectionError as ConnectorConnectionError
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev import processes


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", key, "-out", cert)  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """redis-server serving TLS only, its certificate (for localhost) signed by our own CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed (Debian package openssl: make deps)")
    directory = tmp_path_factory.mktemp("redis-tls")
    ca_key, ca_cert = make_ca(directory, "redis-ca")
    _, other_ca = make_ca(directory, "other-ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
            "-extfile", directory / "san.ext", "-out", cert)  # fmt: skip
    port = processes.free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca_cert),
         "--tls-auth-clients", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        processes.wait_for(lambda: processes.port_open(port), timeout=10, what="redis with TLS")
        yield port, ca_cert, other_ca
    finally:
        processes.terminate(proc)


def connector_settings(port: int, ca_file: Path, query: str = "") -> ConnectorSettings:
    return ConnectorSettings(
        livestream_id="tls-test",
        username="alice",
        redis_url=f"rediss://localhost:{port}/0{query}",
        redis_ca_file=ca_file,
    )


async def test_the_connector_trusts_redis_signed_by_its_ca_bundle(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca_cert, _ = tls_redis
    settings = connector_settings(port, ca_cert)
    client = RedisClient.from_url(settings.redis_url, **redis_options(settings))  # as connector.main makes it
    try:
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize("query", ["", "?ssl_cert_reqs=none&ssl_check_hostname=false"], ids=["plain", "url-relaxed"])
async def test_the_connector_refuses_redis_its_ca_bundle_did_not_sign(
    tls_redis: tuple[int, Path, Path], query: str
) -> None:
    """Also when the URL in the Secret asks for no verification: the operator's bundle wins."""
    port, _, other_ca = tls_redis
    settings = connector_settings(port, other_ca, query)
    client = RedisClient.from_url(settings.redis_url, **redis_options(settings))
    try:
        with pytest.raises(ConnectorConnectionError, match="certificate verify failed"):
            await client.ping()
    finally:
        await client.aclose()


async def test_the_other_components_take_the_bundle_in_their_url(tls_redis: tuple[int, Path, Path]) -> None:
    port, ca_cert, other_ca = tls_redis
    trusted = aioredis.from_url(f"rediss://localhost:{port}/0?ssl_ca_certs={ca_cert}")
    untrusted = aioredis.from_url(f"rediss://localhost:{port}/0?ssl_ca_certs={other_ca}")
    try:
        assert await trusted.ping()
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await untrusted.ping()
    finally:
        await trusted.aclose()
        await untrusted.aclose()
