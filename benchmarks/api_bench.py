"""SSE fan-out benchmark: 1,000 subscribers of one livestream on one API process.

Events are XADDed at 500 events/s into one livestream's stream (as its connector would);
each carries its send time. Measured in the same run:

- delay send -> received by an SSE subscriber of the API (p50/p99, sampled subscribers),
- delay send -> received by a bare Redis `XREAD BLOCK` reader (the floor), and their ratio,
- how many events every subscriber received (all of them, or the run is void),
- the API process's RSS before and with the subscribers (its own process: /proc).

Everything runs on this machine: a local control plane (the API checks the Livestream
and its phase there), Redis, PostgreSQL, the API under uvicorn as a subprocess, and the
subscribers in worker processes of raw asyncio sockets (cheap enough that the API, not
the clients, is what is measured).

    python -m benchmarks.api_bench [--subscribers 1000] [--rate 500] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis
from kubernetes import client, config

from tiktok_service.api import keys, repository
from tiktok_service.database.migrate import migrate
from tiktok_service.domain import naming
from tiktok_service_dev import operator_harness, processes
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis

API_USER = "api"
WORKSPACE = "bench"
_SENT = re.compile(rb'"sent_ns":(\d+)')
_ID_LINE = b"\nid: "


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def event_json(livestream_id: str, seq: int, sent_ns: int) -> bytes:
    """A CloudEvent of a realistic size (~450 bytes) carrying its send time."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(7_300_000_000_000_000_000 + seq),
            "source": f"/tiktok-service/livestreams/{livestream_id}",
            "type": "tiktok.comment",
            "time": "2026-01-01T00:00:00.000Z",
            "datacontenttype": "application/json",
            "schemaversion": 1,
            "livestreamid": livestream_id,
            "roomid": "7300000000000000001",
            "data": {
                "user": {"id": "6800000000000000001", "unique_id": "viewer_0001", "nickname": "Viewer One"},
                "comment": "what a great stream, greetings from the benchmark!",
                "sent_ns": sent_ns,
            },
        }
    )


# -- worker processes -------------------------------------------------------------------------------


async def _subscriber(
    host: str,
    port: int,
    path: str,
    token: str,
    measure: bool,
    delays: list[float],
    counts: list[int],
    received: list[int],
    ready: Any,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.decode(errors="replace"))
    index = len(counts)
    counts.append(0)
    buffer = b""
    opened = False
    try:
        while chunk := await reader.read(262_144):
            now = time.time_ns()
            received[0] += len(chunk)
            buffer += chunk
            end = buffer.rfind(b"\n\n")
            if end < 0:
                continue
            complete, buffer = buffer[: end + 2], buffer[end + 2 :]
            if not opened:
                opened = True
                ready()
            counts[index] += complete.count(_ID_LINE)
            if measure:
                delays.extend((now - int(sent)) / 1e6 for sent in _SENT.findall(complete))
    finally:
        writer.close()


async def _clients(args: argparse.Namespace) -> None:
    delays: list[float] = []
    counts: list[int] = []
    received = [0]
    opened = 0
    all_open = asyncio.Event()

    def ready() -> None:
        nonlocal opened
        opened += 1
        if opened == args.count:
            all_open.set()

    tasks = [
        asyncio.create_task(
            _subscriber(
                args.host,
                args.port,
                args.path,
                args.token,
                i % args.measure_every == 0,
                delays,
                counts,
                received,
                ready,
            )
        )
        for i in range(args.count)
    ]
    await asyncio.wait_for(all_open.wait(), 120)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"delays": delays, "counts": counts, "bytes": received[0]}), flush=True)


async def _bare_reader(args: argparse.Namespace) -> None:
    redis = aioredis.from_url(args.redis_url)
    delays: list[float] = []
    last = "0-0"
    print("ready", flush=True)
    deadline = time.monotonic() + args.deadline_s
    while len(delays) < args.expect and time.monotonic() < deadline:
        reply: Any = await redis.xread({args.key: last}, count=1000, block=1000)
        now = time.time_ns()
        for entry_id, fields in reply[0][1] if reply else []:
            last = entry_id.decode()
            delays.append((now - orjson.loads(fields[naming.FIELD_EVENT])["data"]["sent_ns"]) / 1e6)
    await redis.aclose()
    print(json.dumps({"delays": delays}), flush=True)


# -- the run ------------------------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.api_bench", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(stream: IO[str] | None) -> str:
    assert stream is not None
    return stream.readline().strip()


async def _setup_database(dsn: str) -> tuple[str, str]:
    name = f"apibench_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = dsn.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    new = keys.generate()
    conn = await asyncpg.connect(url)
    await repository.insert_key(conn, workspace_id=WORKSPACE, name="bench", key_hash=new.digest, key_prefix=new.shown)
    await conn.close()
    return url, new.secret


async def _publish(redis_url: str, key: str, livestream_id: str, rate: int, duration: float) -> int:
    """XADD `rate` events/s for `duration` s in 10 ms ticks (pipelined per tick); returns how many."""
    redis = aioredis.from_url(redis_url)
    per_tick, tick_s = max(1, rate // 100), 0.01
    total = int(rate * duration)
    sent = 0
    started = time.monotonic()
    while sent < total:
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(min(per_tick, total - sent)):
                fields = {
                    "type": "tiktok.comment",
                    "id": str(sent),
                    "event": event_json(livestream_id, sent, time.time_ns()),
                }
                pipe.xadd(key, fields, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
                sent += 1
            await pipe.execute()
        next_tick = started + (sent // per_tick) * tick_s
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    await redis.aclose()
    return sent


def run(args: argparse.Namespace) -> None:
    with (
        LocalRedis() as redis_server,
        LocalPostgres() as postgres,
        ControlPlane(extra_users=[API_USER], wait_for_controllers=False) as cp,
        tempfile.TemporaryDirectory() as tmp,
    ):
        namespace = "bench"
        with config.new_client_from_config(config_file=str(cp.kubeconfig_path)) as admin:
            operator_harness.install_crds(admin)
            client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            role = next(
                d
                for d in operator_harness.manifests(operator_harness.DEPLOY_DIR / "api-rbac.yaml")
                if d["kind"] == "Role"
            )
            operator_harness.apply(admin, [role], namespace=namespace)
            binding = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "api"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": API_USER}],
            }
            operator_harness.apply(admin, [binding], namespace=namespace)
        database_url, token = asyncio.run(_setup_database(postgres.dsn))
        port = processes.free_port()
        env = {
            **os.environ,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "API_REDIS_URL": redis_server.url,
            "API_DATABASE_URL": database_url,
            "API_KUBECONFIG": str(cp.kubeconfig_for(API_USER)),
            "API_NAMESPACE": namespace,
            "API_LOG_LEVEL": "WARNING",
            # One key opens every subscriber at once: the tenant limits must not be what is measured.
            "API_MAX_STREAMS_PER_KEY": str(args.subscribers),
            "API_MAX_STREAMS_PER_WORKSPACE": str(args.subscribers),
            "API_RATE_LIMIT": f"{args.subscribers * 10}/second",
        }
        log = Path(tmp) / "api.log"
        with log.open("w") as log_file:
            api = subprocess.Popen(
                [sys.executable, "-m", "tiktok_service", "api"],
                env=env,
                stderr=log_file,
            )
        workers: list[subprocess.Popen[str]] = []
        try:
            base = f"http://127.0.0.1:{port}"
            processes.wait_for(lambda: processes.port_open(port), timeout=30, what="the API")
            auth = {"Authorization": f"Bearer {token}"}
            connected = httpx.post(f"{base}/api/livestreams/connect", json={"username": "bench_room"}, headers=auth)
            connected.raise_for_status()
            livestream_id = connected.json()["id"]
            key = naming.livestream_stream(livestream_id)
            idle_rss = rss_mb(api.pid)

            per_worker = args.subscribers // args.workers
            path = f"/api/livestreams/{livestream_id}/events"
            for _ in range(args.workers):
                workers.append(
                    _spawn(
                        "clients", "--port", str(port), "--path", path, "--token", token,
                        "--count", str(per_worker), "--measure-every", str(args.measure_every),
                    )
                )  # fmt: skip
            for worker in workers:
                if _line(worker.stdout) != "ready":
                    raise RuntimeError("a client worker did not connect its subscribers")
            subscribed_rss = rss_mb(api.pid)
            expect = int(args.rate * args.duration)
            bare = _spawn("reader", "--redis-url", redis_server.url, "--key", key, "--expect", str(expect))
            workers.append(bare)
            assert _line(bare.stdout) == "ready"

            peak = [subscribed_rss]
            cpu_before = _cpu_s(api.pid)
            clients_before = sum(_cpu_s(w.pid) for w in workers[:-1])

            async def publish_and_watch() -> int:
                publishing = asyncio.create_task(
                    _publish(redis_server.url, key, livestream_id, args.rate, args.duration)
                )
                while not publishing.done():
                    peak.append(rss_mb(api.pid))
                    await asyncio.sleep(0.5)
                return await publishing

            sent = asyncio.run(publish_and_watch())
            cpu_used = _cpu_s(api.pid) - cpu_before
            clients_cpu = sum(_cpu_s(w.pid) for w in workers[:-1]) - clients_before
            bare_result = json.loads(_line(bare.stdout))
            time.sleep(args.drain_s)  # let the last events reach every subscriber, then ask for results
            results = []
            for worker in workers[:-1]:
                assert worker.stdin is not None
                worker.stdin.write("stop\n")
                worker.stdin.flush()
                results.append(json.loads(_line(worker.stdout)))
        finally:
            for worker in workers:
                processes.terminate(worker)  # type: ignore[arg-type]
            processes.terminate(api)  # type: ignore[arg-type]

    api_delays = [d for r in results for d in r["delays"]]
    counts = [c for r in results for c in r["counts"]]
    redis_delays = bare_result["delays"]
    subscribers = len(counts)
    complete = sum(1 for c in counts if c == sent)
    api_p50, api_p99 = percentile(api_delays, 0.50), percentile(api_delays, 0.99)
    redis_p50, redis_p99 = percentile(redis_delays, 0.50), percentile(redis_delays, 0.99)
    print(f"api sse subscribers: {subscribers} on one API process, {sent} events at {args.rate}/s")
    print(f"api sse subscribers that received every event: {complete}/{subscribers}")
    print(
        f"api sse delay p50: {api_p50:.1f} ms (bare redis XREAD {redis_p50:.1f} ms, ratio {api_p50 / redis_p50:.1f}x)"
    )
    print(
        f"api sse delay p99: {api_p99:.1f} ms (bare redis XREAD {redis_p99:.1f} ms, ratio {api_p99 / redis_p99:.1f}x)"
    )
    received_mb = sum(r["bytes"] for r in results) / 1e6 / args.duration
    print(f"api sse deliveries/s: {sum(counts) / args.duration:,.0f} ({received_mb:,.0f} MB/s over loopback)")
    print(f"api cpu: {cpu_used / args.duration:.2f} cores (subscriber processes: {clients_cpu / args.duration:.2f})")
    print(f"api rss idle: {idle_rss:.0f} MB")
    print(f"api rss with {subscribers} subscribers: {max(peak):.0f} MB peak")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api_bench")
    sub = parser.add_subparsers(dest="mode")
    clients = sub.add_parser("clients")
    clients.add_argument("--host", default="127.0.0.1")
    clients.add_argument("--port", type=int, required=True)
    clients.add_argument("--path", required=True)
    clients.add_argument("--token", required=True)
    clients.add_argument("--count", type=int, required=True)
    clients.add_argument("--measure-every", type=int, default=20)
    reader = sub.add_parser("reader")
    reader.add_argument("--redis-url", required=True)
    reader.add_argument("--key", required=True)
    reader.add_argument("--expect", type=int, required=True)
    reader.add_argument("--deadline-s", type=float, default=300.0)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="client processes sharing the subscribers")
    parser.add_argument("--measure-every", type=int, default=20, help="1 in N subscribers records delays")
    parser.add_argument("--drain-s", type=float, default=3.0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.mode == "clients":
        asyncio.run(_clients(args))
    elif args.mode == "reader":
        asyncio.run(_bare_reader(args))
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
