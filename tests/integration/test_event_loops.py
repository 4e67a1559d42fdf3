"""A loop of `tiktok_service_dev.event_loops` closes with no connection open, against a real TLS peer.

The peer here completes the handshake and then never answers the close_notify alert (as a
busy API server may not, in time): asyncio keeps such a socket open until it answers.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiktok_service_dev import event_loops


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "peer.crt", directory / "peer.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def silent_tls_peer(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server on 127.0.0.1 that handshakes and then ignores the client until the test ends."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        raw, _ = listener.accept()
        accepted.append(context.wrap_socket(raw, server_side=True))  # handshake, then silence
        done.wait()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], cert
    finally:
        done.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


async def _open_and_close(port: int, cert: Path, sockets: list[socket.socket]) -> None:
    """Connect, then close without waiting (what aiohttp does with a released response's connection)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context(cafile=cert))
    sockets.append(writer.get_extra_info("socket"))
    writer.close()


def test_a_connection_still_closing_when_the_coroutine_returns_is_closed_with_the_loop(
    silent_tls_peer: tuple[int, Path],
) -> None:
    port, cert = silent_tls_peer
    sockets: list[socket.socket] = []

    event_loops.run(_open_and_close(port, cert, sockets))

    assert len(sockets) == 1
    assert sockets[0].fileno() == -1  # closed, not left to the garbage collector


def test_close_connections_closes_what_nobody_closed(silent_tls_peer: tuple[int, Path]) -> None:
    port, cert = silent_tls_peer
    loop = event_loops.TrackingLoop()
    try:
        _, writer = loop.run_until_complete(
            asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context(cafile=cert))
        )
        sock = writer.get_extra_info("socket")
        assert loop.open_connections() != []

        aborted = loop.run_until_complete(event_loops.close_connections(loop, deadline_s=0.2))

        assert aborted == 1  # the peer never answered the close_notify
        assert loop.open_connections() == []
        assert sock.fileno() == -1
    finally:
        event_loops.shut_down(loop)
