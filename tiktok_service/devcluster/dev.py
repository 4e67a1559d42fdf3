"""`tiktok-service dev` (`make dev`): the whole data plane on one machine, events shown live.

Starts Redis and PostgreSQL (local, temporary), the TikTok LIVE simulator with one room,
a persister and a connector as separate processes configured exactly as their pods would
be, then prints the livestream's events as they arrive. Ctrl-C stops everything in reverse
order and removes the temporary data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis

from tiktok_service.devcluster import processes
from tiktok_service.devcluster.postgres_server import LocalPostgres
from tiktok_service.devcluster.redis_server import LocalRedis
from tiktok_service.domain import naming
from tiktok_service.domain.events import Envelope, decode
from tiktok_service.persister import livestreams_repository
from tiktok_service.persister.livestreams_repository import LivestreamStatus
from tiktok_service.persister.migrate import migrate


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tiktok-service dev", description=__doc__.splitlines()[0])
    parser.add_argument("--username", default="demo_streamer", help="simulated TikTok user")
    parser.add_argument("--rate", type=float, default=5.0, help="simulated events per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="do not print events, only a running count")
    return parser.parse_args(argv)


class Stack:
    """Owns every process of the local stack; `close()` stops them in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.redis = LocalRedis()
        self.postgres = LocalPostgres()

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tiktok_service", *args],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path(name), "ab"),  # noqa: SIM115 - the child owns it
        )
        self.children.append((name, proc))
        return proc

    def log_path(self, name: str) -> str:
        return os.path.join(tempfile.gettempdir(), f"tiktok-dev-{name}.log")

    def close(self) -> None:
        for _, proc in reversed(self.children):
            processes.terminate(proc, timeout=25)
        self.redis.close()
        self.postgres.close()


def _describe(envelope: Envelope) -> str:
    user = f"@{envelope.user.unique_id}" if envelope.user else ""
    data = envelope.data
    kind = envelope.type.value.removeprefix("tiktok.")
    if kind == "comment":
        text = str(data.get("text", "")).replace("\n", " ")
        detail = f"{user}: {text}"
    elif kind == "gift":
        detail = (
            f"{user} sent {data.get('gift_name')} x{data.get('repeat_count')} ({data.get('total_diamonds')} diamonds)"
        )
    elif kind == "like":
        detail = f"{user} +{data.get('count')} likes (total {data.get('total')})"
    elif kind == "viewer":
        detail = f"{data.get('viewer_count')} watching"
    elif kind == "unknown":
        detail = f"method {data.get('method')}"
    else:
        detail = user or str(data)
    return f"{kind:<10} {detail}"


async def show_events(redis_url: str, livestream_id: str, quiet: bool) -> None:
    client = aioredis.from_url(redis_url)
    stream = naming.livestream_stream(livestream_id)
    last_id: bytes | str = "0-0"
    count = 0
    try:
        while True:
            reply = cast(
                list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                await client.xread({stream: last_id}, block=1000, count=500),
            )
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    count += 1
                    if not quiet:
                        envelope = decode(fields[naming.FIELD_EVENT])
                        print(
                            f"{envelope.time_ms // 1000 % 86400 // 3600:02d}:"
                            f"{envelope.time_ms // 60000 % 60:02d}:{envelope.time_ms // 1000 % 60:02d}  "
                            f"{_describe(envelope)}",
                            flush=True,
                        )
            if quiet:
                print(f"\r{count} events", end="", flush=True)
    finally:
        await client.aclose()


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        yield stack
    finally:
        print("\nstopping…", file=sys.stderr)
        stack.close()


async def prepare_database(dsn: str, livestream_id: str, username: str) -> None:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await livestreams_repository.upsert_livestream(
            conn, id=uuid.UUID(livestream_id), username=username, status=LivestreamStatus.CONNECTING, workspace_id="dev"
        )
    finally:
        await conn.close()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    livestream_id = str(uuid.uuid4())
    with running_stack() as stack:
        stack.redis.start()
        stack.postgres.start()
        asyncio.run(prepare_database(stack.postgres.dsn, livestream_id, args.username))
        sim_port = processes.free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        stack.spawn(
            "simulator",
            ["simulator", "--port", str(sim_port), "--room", f"{args.username}:{args.seed}:{args.rate}"],
            {},
        )
        processes.wait_for(lambda: processes.port_open(sim_port), timeout=20, what="the simulator")
        stack.spawn(
            "persister",
            ["persister"],
            {
                "PERSISTER_REDIS_URL": stack.redis.url,
                "PERSISTER_DATABASE_URL": stack.postgres.dsn,
                "PERSISTER_HTTP_PORT": "0",
            },
        )
        stack.spawn(
            "connector",
            ["connector"],
            {
                "CONNECTOR_LIVESTREAM_ID": livestream_id,
                "CONNECTOR_USERNAME": args.username,
                "CONNECTOR_REDIS_URL": stack.redis.url,
                "CONNECTOR_SIGN_API_URL": sim_url,
                "CONNECTOR_TIKTOK_APP_URL": sim_url,
                "CONNECTOR_TIKTOK_WEBCAST_URL": f"{sim_url}/webcast",
                "CONNECTOR_HTTP_PORT": "0",
                "CONNECTOR_WAIT_FOR_LIVE": "true",
                "CONNECTOR_LIVE_POLL_INTERVAL_S": "2",
            },
        )
        print(f"TikTok Service dev stack — livestream {livestream_id} (@{args.username})", file=sys.stderr)
        print(
            f"  redis      {stack.redis.url}\n  postgres   {stack.postgres.dsn}\n  simulator  {sim_url}",
            file=sys.stderr,
        )
        print(f"  logs       {stack.log_path('*')}\n  Ctrl-C to stop\n", file=sys.stderr)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(show_events(stack.redis.url, livestream_id, args.quiet))
    return 0


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
