"""Throughput benchmark: ``python -m tiktok_service_dev.simulator.bench [raw|tiktoklive] --seconds 5``.

The simulator runs in a child process (its own core); this process is the consumer:

* ``raw`` - an aiohttp WebSocket client that only receives frames (and acks nothing): measures how
  fast one room can push (messages/s as counted by the simulator while the client keeps up).
* ``tiktoklive`` - the real ``TikTokLiveClient`` decoding chat messages: measures the library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

_URL_RE = re.compile(r"listening on (http://\S+)")


async def _start_simulator(scenario: dict[str, Any]) -> tuple[asyncio.subprocess.Process, str]:
    rooms_file = Path(tempfile.gettempdir()) / f"sim-bench-{os.getpid()}.json"
    await asyncio.to_thread(rooms_file.write_text, json.dumps({"rooms": {"bench": scenario}}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiktok_service_dev.simulator",
        "--port",
        "0",
        "--scenario-file",
        str(rooms_file),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    match = _URL_RE.search(line)
    if match is None:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, match.group(1)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await proc.wait()


async def _stats(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/_sim/rooms/bench/stats") as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def bench_raw(seconds: float, batch: int) -> dict[str, Any]:
    proc, base = await _start_simulator({"seed": 1, "rate": 0, "batch": batch, "ack_every": 0})
    try:
        async with aiohttp.ClientSession() as session:
            stats = await _stats(session, base)
            url = (
                base.replace("http://", "ws://")
                + f"/webcast/im/ws_proxy/ws_reuse_supplement/?room_id={stats['room_id']}"
            )
            frames = 0
            received = 0
            async with session.ws_connect(url, max_msg_size=0) as ws:
                await ws.receive()  # first frame: the pump is running
                before = await _stats(session, base)
                start = time.perf_counter()
                deadline = start + seconds
                while time.perf_counter() < deadline:
                    msg = await ws.receive()
                    frames += 1
                    received += len(msg.data)
                after = await _stats(session, base)
                elapsed = time.perf_counter() - start
        events = after["events_sent"] - before["events_sent"]
        return {
            "mode": "raw",
            "batch": batch,
            "seconds": round(elapsed, 2),
            "messages_per_s": round(events / elapsed),
            "frames_per_s": round(frames / elapsed),
            "mbytes_per_s": round(received / elapsed / 1e6, 2),
        }
    finally:
        await _stop(proc)


async def bench_tiktoklive(seconds: float, batch: int) -> dict[str, Any]:
    from TikTokLive import TikTokLiveClient
    from TikTokLive.client.web.web_settings import WebDefaults
    from TikTokLive.events import CommentEvent

    proc, base = await _start_simulator({"seed": 1, "rate": 0, "batch": batch, "mix": {"comment": 1}})
    saved = (WebDefaults.tiktok_app_url, WebDefaults.tiktok_webcast_url)
    WebDefaults.tiktok_app_url, WebDefaults.tiktok_webcast_url = base, base + "/webcast"
    try:
        client = TikTokLiveClient("bench", web_kwargs={"signer_kwargs": {"sign_api_base": base, "sign_api_key": "x"}})
        comments = 0

        def on_comment(_: CommentEvent) -> None:
            nonlocal comments
            comments += 1

        client.add_listener(CommentEvent, on_comment)
        await client.start()
        await asyncio.sleep(1.0)  # warm-up: let the connection settle before measuring
        start_count, start = comments, time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        rate = (comments - start_count) / elapsed
        await _stop(proc)  # stop the firehose first: a close handshake behind a backlog is slow
        with contextlib.suppress(Exception):
            await client.disconnect()
        await client.web.close()
        return {"mode": "tiktoklive", "batch": batch, "seconds": round(elapsed, 2), "comments_per_s": round(rate)}
    finally:
        WebDefaults.tiktok_app_url, WebDefaults.tiktok_webcast_url = saved
        if proc.returncode is None:
            await _stop(proc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiktok_service_dev.simulator.bench")
    parser.add_argument("mode", choices=("raw", "tiktoklive"), nargs="?", default="raw")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    runner = bench_raw if args.mode == "raw" else bench_tiktoklive
    print(json.dumps(asyncio.run(runner(args.seconds, args.batch))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
