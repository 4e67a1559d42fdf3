"""The connector's sign server connection verifies TLS, against a real HTTPS server on this machine.

TikTokLive's own sign client skips certificate checks; with a session configured, its requests
carry the account's session id, so a server that cannot prove who it is must get nothing.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import UnexpectedSignatureError

from tiktok_service.connector import client_options


@dataclass
class SignServer:
    url: str
    certificate: Path
    requests: list[dict[str, str]] = field(default_factory=list)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no public CA signed (openssl, as an operator would make one)."""
    cert, key = directory / "sign.crt", directory / "sign.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def sign_server(tmp_path: Path) -> AsyncIterator[SignServer]:
    cert, key = _self_signed(tmp_path)
    server = SignServer(url="", certificate=cert)

    async def sign(request: web.Request) -> web.Response:
        server.requests.append({"path": request.path, "api_key": request.headers.get("X-Api-Key", "")})
        return web.json_response({"code": 500, "message": "not a real signer"}, status=500)

    app = web.Application()
    app.router.add_post("/webcast/sign_url", sign)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"https://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def _client(server: SignServer) -> TikTokLiveClient:
    return TikTokLiveClient(
        unique_id="alice", web_kwargs={"signer_kwargs": {"sign_api_base": server.url, "sign_api_key": "key-1"}}
    )


async def _sign(client: TikTokLiveClient) -> None:
    try:
        await client.web.signer.webcast_sign(
            url="https://webcast.tiktok.com/webcast/room/enter/?aid=1988",
            method="POST",
            sign_url_type="xhr",
            payload="",
            user_agent="Mozilla/5.0",
        )
    finally:
        await client.web.signer.sdk_client.get_async_httpx_client().aclose()
        await client.web.close()


async def test_the_library_alone_sends_to_a_server_it_cannot_verify(sign_server: SignServer) -> None:
    """Why the fix exists (and proof that the server answers): TikTokLive's default reaches it."""
    client = _client(sign_server)

    with pytest.raises(UnexpectedSignatureError):  # our server answers 500
        await _sign(client)

    assert sign_server.requests == [{"path": "/webcast/sign_url", "api_key": "key-1"}]


async def test_a_connector_client_refuses_a_sign_server_it_cannot_verify(sign_server: SignServer) -> None:
    client = _client(sign_server)
    client_options.verify_sign_server_tls(client)

    with pytest.raises(UnexpectedSignatureError) as refused:
        await _sign(client)

    assert isinstance(refused.value.__cause__, Exception)
    assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value.__cause__)
    assert sign_server.requests == [], "nothing, so no session id, reached the unverified server"


async def test_a_sign_server_with_a_trusted_certificate_is_reached_with_the_api_key(
    sign_server: SignServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private CA is trusted through SSL_CERT_FILE, as httpx reads it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(sign_server.certificate))
    client = _client(sign_server)
    client_options.verify_sign_server_tls(client)

    with pytest.raises(UnexpectedSignatureError):  # verified, then our server answers 500
        await _sign(client)

    assert sign_server.requests == [{"path": "/webcast/sign_url", "api_key": "key-1"}]
