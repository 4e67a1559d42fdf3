"""One measured run, in its own process so CPU and RSS belong to what is measured.

`bare`: the TikTokLive client alone, decoding the room with no handler (the baseline).
`connector`: our connector (normalise + dedupe + publish to Redis), same room, same events.
`latency-bare` / `latency-connector`: per-event delay from the simulator's send time.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

from TikTokLive import TikTokLiveClient
from TikTokLive.client.web.web_settings import WebDefaults
from TikTokLive.events import proto_events as pe
from TikTokLive.events.custom_events import LiveEndEvent

from tiktok_service import gc_tuning


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def configure(url: str) -> None:
    WebDefaults.tiktok_app_url = url
    WebDefaults.tiktok_webcast_url = url + "/webcast"


def tune_gc() -> None:
    """The garbage collector as `tiktok-service connector` sets it, in both processes.

    The baseline runs with the same settings: the young-generation threshold trades memory
    for CPU, and comparing processes that make that trade differently would measure the
    trade, not the connector.
    """
    gc_tuning.tune_for_throughput(gc_tuning.CONNECTOR_YOUNG_THRESHOLD)


async def bare(url: str, username: str, latency: bool) -> dict[str, Any]:
    configure(url)
    tune_gc()
    client = TikTokLiveClient(unique_id=username, web_kwargs={"signer_kwargs": {"sign_api_base": url}})
    delays: list[float] = []
    if latency:

        def on_comment(event: pe.CommentEvent) -> None:
            delays.append(time.time() * 1000 - event.common.create_time)

        client.add_listener(pe.CommentEvent, on_comment)
    ended = asyncio.Event()
    client.add_listener(LiveEndEvent, lambda _: ended.set())
    cpu0, t0 = time.process_time(), time.perf_counter()
    task = await client.start()
    await task
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,
        "rss_mb": rss_mb(),
        "delays_ms": delays,
    }


async def connector(url: str, username: str, redis_url: str, latency: bool) -> dict[str, Any]:
    from tiktok_service.connector.redis_client import RedisClient
    from tiktok_service.connector.runner import ConnectorRunner, configure_tiktok_urls
    from tiktok_service.settings import ConnectorSettings

    settings = ConnectorSettings(
        livestream_id=f"bench-{username}",
        username=username,
        redis_url=redis_url,
        sign_api_url=url,
        tiktok_app_url=url,
        tiktok_webcast_url=url + "/webcast",
        http_port=0,
    )
    configure_tiktok_urls(settings)

    tune_gc()
    redis = RedisClient.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)  # as `connector.main`
    runner = ConnectorRunner(settings, redis=redis)
    cpu0, t0 = time.process_time(), time.perf_counter()
    code = await runner.run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await redis.aclose()
    return {
        "seconds": elapsed,
        "cpu_s": cpu,
        "rss_mb": rss_mb(),
        "exit_code": int(code),
        "published": runner.publisher.published,
        "delays_ms": [],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "connector"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    if args.mode == "bare":
        result = asyncio.run(bare(args.url, args.username, args.latency))
    else:
        result = asyncio.run(connector(args.url, args.username, args.redis_url, args.latency))
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
