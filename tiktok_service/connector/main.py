"""`tiktok-service connector`: process wiring (signals, Redis client, health endpoint)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from tiktok_service import gc_tuning, logs
from tiktok_service.connector import redis_client
from tiktok_service.connector import runner as connector_runner
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.health_server import HealthServer
from tiktok_service.settings import ConnectorSettings

log = logging.getLogger(__name__)


async def run_connector(settings: ConnectorSettings, *, install_signal_handlers: bool = True) -> int:
    connector_runner.configure_tiktok_urls(settings)
    try:
        redis = RedisClient.from_url(settings.redis_url, **redis_client.redis_options(settings))
    except ValueError as exc:  # a URL no restart will fix
        log.error("invalid Redis URL", extra={"error": str(exc)})
        return int(ExitCode.CONFIG)
    runner = connector_runner.ConnectorRunner(settings, redis=redis)

    def probe() -> tuple[bool, dict[str, Any]]:
        details = {
            "phase": runner.status.phase.value,
            "room_id": runner.status.room_id,
            "buffered": runner.publisher.pending,
            "redis": runner.publisher.redis_up,
        }
        return True, details

    health = HealthServer(host="0.0.0.0", port=settings.http_port, probe=probe)
    try:
        await health.start()
    except OSError as exc:
        # A taken port is a configuration problem: restarting the pod would not help.
        log.error("cannot serve /healthz and /metrics", extra={"port": settings.http_port, "error": str(exc)})
        await redis.aclose()
        return int(ExitCode.CONFIG)
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
    log.info("connector starting", extra={"livestream_id": settings.livestream_id, "username": settings.username})
    try:
        code = await runner.run()
    except Exception:
        log.exception("connector failed")
        code = ExitCode.FAILED
    finally:
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await health.stop()
        await redis.aclose()
    log.info("connector exiting", extra={"exit_code": int(code), "reason": runner.status.reason})
    return int(code)


def main(settings: ConnectorSettings) -> int:
    logs.configure("connector", settings.log_level)
    gc_tuning.tune_for_throughput(gc_tuning.CONNECTOR_YOUNG_THRESHOLD)
    return asyncio.run(run_connector(settings))
