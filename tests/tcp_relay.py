"""A TCP relay for the test node: what kube-proxy does for the `kubernetes` Service, for one address.

The test control plane's API server listens on loopback, which a pod (its own network
namespace on the node's bridge) cannot reach. Pods find the API server at the `kubernetes`
Service's cluster IP (`KUBERNETES_SERVICE_HOST`), which the API server's own certificate names;
there is no kube-proxy here, so the test puts that IP on the node's bridge (an address it
creates on this machine) and relays its port to the API server's loopback port. TLS goes
through untouched: the pods verify the API server's certificate and present their tokens.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

_CHUNK = 65536
_log = logging.getLogger(__name__)

Address = tuple[str, int]


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy until either side closes, then close both (the other pump then ends too)."""
    try:
        while data := source.recv(_CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


class TcpRelay:
    """Accepts on `listen` and relays every connection to `target`, a thread per direction.

    `target` may be a function, asked at each connection (a Service's endpoints change as its
    pods come and go); when it answers None, or raises (logged, counted in `target_errors`), that
    connection is refused (closed at once) and the relay goes on accepting."""

    def __init__(self, listen: Address, target: Address | Callable[[], Address | None]) -> None:
        self.listen = listen
        self._target: Callable[[], Address | None] = target if callable(target) else (lambda: target)
        self._server = socket.create_server(listen, reuse_port=False)
        self._server.settimeout(0.5)
        self._closing = threading.Event()
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accepted = 0
        #: Connections refused because asking `target` raised (logged with the traceback).
        self.target_errors = 0
        self._thread = threading.Thread(target=self._serve, name=f"relay-{listen[0]}:{listen[1]}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                inbound, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                target = self._target()
            except Exception:  # e.g. the API server's answer for the endpoints: refuse this connection only
                _log.exception("relay %s:%d: no target for a connection, refused", *self.listen)
                self.target_errors += 1
                inbound.close()
                continue
            try:
                if target is None:
                    raise ConnectionRefusedError("no endpoint")
                outbound = socket.create_connection(target, timeout=10)
            except OSError:
                inbound.close()
                continue
            outbound.settimeout(None)
            inbound.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._connections += [inbound, outbound]
            threading.Thread(target=_pump, args=(inbound, outbound), daemon=True).start()
            threading.Thread(target=_pump, args=(outbound, inbound), daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        self._server.close()
        self._thread.join(5)
        with self._lock:
            for end in self._connections:
                with contextlib.suppress(OSError):
                    end.close()


@contextlib.contextmanager
def address_on(device: str, ip: str) -> Iterator[None]:
    """`ip`/32 on `device` for the duration (removed even if the device is already gone)."""
    subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", device], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", device], check=False, capture_output=True)


@contextlib.contextmanager
def service_relay(device: str, listen: Address, target: Address | Callable[[], Address | None]) -> Iterator[TcpRelay]:
    """The Service's IP on `device`, and a relay from its port to `target`."""
    with address_on(device, listen[0]):
        relay = TcpRelay(listen, target)
        try:
            yield relay
        finally:
            relay.close()
