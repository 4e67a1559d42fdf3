"""Kubeconfig credentials against a real API server and a real TLS server that wants a client certificate.

Each way a kubeconfig can name who we are (an inline token, a token file, an exec plugin) is
checked by asking the API server who we are (SelfSubjectReview); a client certificate given
as data (kept in memory, never written) is checked against a TLS server that requires one.
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.cluster_support import started_control_plane
from tiktok_service.kube_rest import Credentials, RestSession, load_credentials
from tiktok_service_dev.controlplane import ControlPlane

pytestmark = pytest.mark.slow

SELF_REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(crds=False, wait_for_controllers=False) as cp:
        yield cp


def kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(document))
    return path


async def who_am_i(credentials: Credentials) -> str:
    async with RestSession(credentials, timeout_s=10, max_connections=2) as session:
        review = await session._request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=SELF_REVIEW)
    return str(review["status"]["userInfo"]["username"])


async def test_the_control_planes_own_kubeconfig(control_plane: ControlPlane) -> None:
    assert await who_am_i(load_credentials(control_plane.kubeconfig_path)) == "admin"


async def test_token_file_and_relative_ca_path(control_plane: ControlPlane, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(control_plane.ca_cert_path.read_bytes())
    (tmp_path / "token").write_text(control_plane.admin_token + "\n")
    path = kubeconfig(
        tmp_path / "config",
        {"server": control_plane.server_url, "certificate-authority": "pki/ca.crt"},
        {"tokenFile": "token"},
    )
    assert await who_am_i(load_credentials(path)) == "admin"


async def test_exec_plugin_token(control_plane: ControlPlane, tmp_path: Path) -> None:
    plugin = tmp_path / "get-token.py"
    plugin.write_text(
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert info['spec']['interactive'] is False\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',\n"
        "                  'status': {'token': os.environ['ADMIN_TOKEN']}}))\n"
    )
    ca = base64.b64encode(control_plane.ca_cert_path.read_bytes()).decode()
    exec_stanza = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(plugin)],
        "env": [{"name": "ADMIN_TOKEN", "value": control_plane.admin_token}],
    }
    path = kubeconfig(
        tmp_path / "config",
        {"server": control_plane.server_url, "certificate-authority-data": ca},
        {"exec": exec_stanza},
    )
    assert await who_am_i(load_credentials(path)) == "admin"


async def test_a_wrong_token_is_rejected(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The test above cannot pass by accident: the API server does check the token."""
    ca = base64.b64encode(control_plane.ca_cert_path.read_bytes()).decode()
    path = kubeconfig(
        tmp_path / "config", {"server": control_plane.server_url, "certificate-authority-data": ca}, {"token": "nope"}
    )
    with pytest.raises(Exception, match="401"):
        await who_am_i(load_credentials(path))


# -- client certificates given as data -------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from that CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "1", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        extra = ["-extfile", "ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "1", *extra, cwd=d)  # fmt: skip
    return d


@pytest.fixture
async def mutual_tls_server(pki: Path) -> AsyncIterator[str]:
    """An HTTPS server that answers only clients presenting a certificate from the test CA."""

    async def version(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item[0] for item in (peer or {}).get("subject", ()))
        return web.json_response({"client": subject.get("commonName")})

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "temporary-file"])
async def test_client_certificate_data_is_presented(
    pki: Path, mutual_tls_server: str, tmp_path: Path, memfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept in memory on Linux; a private temporary file where memfd does not exist."""
    if not memfd:
        monkeypatch.delattr(os, "memfd_create")
    cluster = {"server": mutual_tls_server, "certificate-authority-data": b64(pki / "ca.crt")}
    user = {"client-certificate-data": b64(pki / "client.crt"), "client-key-data": b64(pki / "client.key")}
    credentials = load_credentials(kubeconfig(tmp_path / "config", cluster, user))
    async with RestSession(credentials, timeout_s=10, max_connections=1) as session:
        assert await session._request("GET", "/version") == {"client": "client"}

    anonymous = load_credentials(kubeconfig(tmp_path / "anonymous", cluster, {}))
    with pytest.raises(Exception):  # noqa: B017 - any TLS failure: the server demands a certificate
        async with RestSession(anonymous, timeout_s=10, max_connections=1) as session:
            await session._request("GET", "/version")
