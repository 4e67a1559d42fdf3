"""Connector benchmarks against the bare TikTokLive client, measured in the same run.

- throughput: events/s decoding the same room (rate 0 = as fast as the simulator sends);
- memory: RSS after the run and peak RSS (the process's high-water mark) during a burst of
  50,000 messages sent as fast as the simulator can;
- latency: simulator send -> entry readable in Redis, p50/p99 at 500 events/s, against
  simulator send -> the bare client's handler.

Both sides run as the same Python, each in its own process, with the garbage-collector
settings `tiktok-service connector` uses (`connector_worker.tune_gc`), on the same stream.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from tiktok_service.domain.events import parse_time
from tiktok_service_dev import processes
from tiktok_service_dev.redis_server import LocalRedis


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Simulator:
    def __init__(self) -> None:
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tiktok_service_dev",
                "simulator",
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
        )
        processes.wait_for(lambda: processes.port_open(self.port), timeout=20, what="simulator")

    def room(self, username: str, **scenario: Any) -> None:
        httpx.put(f"{self.url}/_sim/rooms/{username}", json=scenario, timeout=10).raise_for_status()

    def close(self) -> None:
        processes.terminate(self.proc)


def worker(mode: str, sim: Simulator, username: str, redis_url: str = "", latency: bool = False) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.connector_worker", mode, "--url", sim.url, "--username", username]
    if redis_url:
        args += ["--redis-url", redis_url]
    if latency:
        args.append("--latency")
    out = subprocess.run(args, check=False, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measured(mode: str, sim: Simulator, room: str, scenario: dict[str, Any], redis_url: str = "") -> dict[str, Any]:
    """One run on a fresh room; a run that failed is run again once on another, and said so.

    On a loaded machine a client still decoding a 50,000-message backlog may outlive the
    simulator's close handshake (60 s) and see its socket torn down: that run measured nothing.
    """
    for attempt in range(2):
        name = room if attempt == 0 else f"{room}_again"
        sim.room(name, **scenario)
        try:
            return worker(mode, sim, name, redis_url)
        except RuntimeError as exc:
            if attempt:
                raise
            print(f"# {mode} run failed, running it again: {str(exc).splitlines()[-1]}", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def run(events: int = 50_000, latency_seconds: float = 10.0, repeats: int = 2) -> list[str]:
    lines: list[str] = []
    sim = Simulator()
    try:
        with LocalRedis() as redis:
            # A realistic room: chat and likes the bulk, with battles, polls, subscriptions,
            # goals and guests interleaved (the simulator's "realistic" preset); every message
            # kind costs the bare client its decoding too, so both sides decode the same stream.
            scenario = {
                "seed": 1,
                "rate": 0,
                "batch": 20,
                "mix_preset": "realistic",
                "live_end_after": events,
                "history": 0,
            }
            # Interleaved and repeated: the machine is shared, so each side keeps its best run.
            bare_runs, our_runs = [], []
            for attempt in range(repeats):
                bare_runs.append(measured("bare", sim, f"bare_room{attempt}", scenario))
                our_runs.append(measured("connector", sim, f"conn_room{attempt}", scenario, redis.url))
            bare_seconds = min(r["seconds"] for r in bare_runs)
            our_seconds = min(r["seconds"] for r in our_runs)
            bare_cpu = min(r["cpu_s"] for r in bare_runs)
            our_cpu = min(r["cpu_s"] for r in our_runs)
            bare_rate, our_rate = events / bare_seconds, events / our_seconds
            lines.append(
                f"connector_events_per_s={our_rate:.0f} bare_client_events_per_s={bare_rate:.0f} "
                f"ratio={our_rate / bare_rate:.2f} on the realistic mix (target >= 0.9)"
            )
            lines.append(
                f"connector_cpu_ms_per_1000={our_cpu / events * 1e6:.0f} "
                f"bare_client_cpu_ms_per_1000={bare_cpu / events * 1e6:.0f} "
                f"ratio={our_cpu / bare_cpu:.2f} (lower is better)"
            )
            bare_rss = min(r["rss_mb"] for r in bare_runs)
            our_rss = min(r["rss_mb"] for r in our_runs)
            lines.append(
                f"connector_rss_mb={our_rss:.0f} bare_client_rss_mb={bare_rss:.0f} "
                f"ratio={our_rss / bare_rss:.2f} after {events} events (target <= 1.10)"
            )
            bare_peak = min(r["maxrss_mb"] for r in bare_runs)
            our_peak = min(r["maxrss_mb"] for r in our_runs)
            lines.append(
                f"connector_peak_rss_mb={our_peak:.0f} bare_client_peak_rss_mb={bare_peak:.0f} "
                f"ratio={our_peak / bare_peak:.2f} during the {events}-message burst (target <= 1.10)"
            )

            total = int(500 * latency_seconds)
            live = {"seed": 2, "rate": 500, "batch": 5, "mix": {"comment": 1}, "live_end_after": total, "history": 0}
            sim.room("lat_bare", **live)
            bare_lat = worker("bare", sim, "lat_bare", latency=True)["delays_ms"]
            sim.room("lat_conn", **live)

            delays = asyncio.run(_collect(redis.url, sim, latency_seconds))
            p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
            b50, b99 = percentile(bare_lat, 0.5), percentile(bare_lat, 0.99)
            lines.append(
                f"latency_to_redis_p50_ms={p50:.1f} p99_ms={p99:.1f} bare_client_p50_ms={b50:.1f} "
                f"p99_ms={b99:.1f} p99_ratio={p99 / max(b99, 0.1):.2f} at 500 events/s "
                f"({len(delays)} samples; target p99 <= 20 ms)"
            )
    finally:
        sim.close()
    return lines


async def _collect(redis_url: str, sim: Simulator, seconds: float) -> list[float]:
    result: list[float] = []
    done = asyncio.Event()

    async def reader() -> None:
        client = aioredis.from_url(redis_url)
        last = "$"
        try:
            while not done.is_set():
                reply = await client.xread({"tiktok.comment": last}, block=200, count=1000)
                now = time.time() * 1000
                for _, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id
                        result.append(now - parse_time(orjson.loads(fields[b"event"])["time"]))
        finally:
            await client.aclose()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(worker, "connector", sim, "lat_conn", redis_url)
    done.set()
    await task
    return result


def main() -> None:
    for line in run():
        print(line, flush=True)


if __name__ == "__main__":
    main()
