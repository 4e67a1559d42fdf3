"""``tiktok-service-dev node-agent``: run a local node until SIGTERM/SIGINT (development only)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tiktok_service import logs
from tiktok_service_dev.node_agent import node as nodes
from tiktok_service_dev.node_agent.agent import NodeAgent, NodeAgentError

T = TypeVar("T")


def _flag(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Let argparse show our parsers' own messages instead of "invalid value"."""

    def parse_flag(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_flag


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiktok-service-dev node-agent",
        description="Register a Node and run the pods scheduled to it as local processes "
        "(container images are ignored; `command` runs with the venv's bin first on PATH).",
    )
    p.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig of the cluster to join")
    p.add_argument("--node-name", default=socket.gethostname(), help="Node name (default: the host name)")
    p.add_argument("--cpu", default="4", help="cpu capacity, a Kubernetes quantity (default 4)")
    p.add_argument("--memory", default="8Gi", help="memory capacity, a Kubernetes quantity (default 8Gi)")
    p.add_argument("--pods", type=int, default=110, help="max pods (default 110)")
    p.add_argument("--label", type=_flag(nodes.parse_label), action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--taint", type=_flag(nodes.parse_taint), action="append", default=[], metavar="KEY[=VALUE]:EFFECT")
    p.add_argument("--work-dir", type=Path, help="pod working dirs and logs (default: a temp dir, removed on exit)")
    p.add_argument("--heartbeat-interval", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--crash-backoff-base", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--crash-backoff-cap", type=float, default=300.0, metavar="SECONDS")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure("node-agent", args.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per heartbeat and status write
    agent = NodeAgent(
        args.kubeconfig,
        args.node_name,
        capacity_cpu=args.cpu,
        capacity_memory=args.memory,
        max_pods=args.pods,
        labels=dict(args.label),
        taints=args.taint,
        work_dir=args.work_dir,
        heartbeat_interval_s=args.heartbeat_interval,
        crash_backoff_base_s=args.crash_backoff_base,
        crash_backoff_cap_s=args.crash_backoff_cap,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, agent.request_stop)
        await agent.run()

    try:
        asyncio.run(serve())
    except NodeAgentError as exc:
        print(f"tiktok-service-dev node-agent: {exc}")
        return 1
    return 0
