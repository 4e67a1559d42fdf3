"""The test node's TCP relay (tests/tcp_relay.py): a target that fails refuses one connection only."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.tcp_relay import Address, TcpRelay


@pytest.fixture
def echo() -> Iterator[Address]:
    """A loopback server echoing what each connection sends."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()
    finally:
        server.close()


def test_a_target_that_raises_refuses_that_connection_and_the_relay_goes_on(echo: Address) -> None:
    answers: list[Exception | Address] = [RuntimeError("API server unreachable"), echo]

    def target() -> Address:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()
    relay = TcpRelay(listen, target)
    try:
        with socket.create_connection(listen, timeout=10) as refused:
            assert refused.recv(16) == b""  # closed at once
        with socket.create_connection(listen, timeout=10) as relayed:
            relayed.sendall(b"ping")
            assert relayed.recv(16) == b"ping"
        assert relay.target_errors == 1 and relay.accepted == 1
    finally:
        relay.close()
