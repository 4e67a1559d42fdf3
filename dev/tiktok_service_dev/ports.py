"""Free loopback TCP ports for locally started servers.

The control plane runs several servers side by side (etcd client + peer, kube-apiserver),
possibly several control planes at once (parallel test sessions), so fixed ports would
collide. We ask the kernel for ephemeral ports instead.

There is an unavoidable window between closing our probe socket and the child process
binding the port; `ControlPlane.start` retries with fresh ports if a child reports
"address already in use".
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return ``count`` distinct ports that were free on ``host`` a moment ago.

    All probe sockets are held open until every port is chosen, so the kernel cannot
    hand out the same port twice within one call.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
