"""Standalone entry point: ``tiktok-service-dev simulator --room alice:42:50``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Sequence

from .config import SimulatorConfig, load_scenario_file, parse_room_spec
from .scenario import MIX_PRESETS, Scenario
from .server import serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiktok-service-dev simulator",
        description="Protocol-faithful TikTok LIVE simulator (webcast HTML/API, sign server, push WebSocket).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 = pick a free port")
    parser.add_argument(
        "--room",
        action="append",
        default=[],
        metavar="USERNAME[:SEED[:RATE]]",
        help="create a live room (repeatable)",
    )
    parser.add_argument("--scenario-file", help='JSON: {"rooms": {"alice": {...Scenario fields...}}}')
    parser.add_argument(
        "--auto-create", action="store_true", help="unknown usernames get a live room with default settings"
    )
    parser.add_argument(
        "--mix-preset",
        choices=sorted(MIX_PRESETS),
        help="traffic of --room and auto-created rooms (realistic: battles, polls, subscriptions among the chat)",
    )
    parser.add_argument("--public-url", help="base URL advertised to clients for the WebSocket")
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    args = build_parser().parse_args(argv)
    rooms = load_scenario_file(args.scenario_file) if args.scenario_file else {}
    for spec in args.room:
        username, scenario = parse_room_spec(spec)
        rooms[username] = dataclasses.replace(scenario, mix_preset=args.mix_preset) if args.mix_preset else scenario
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        rooms=rooms,
        auto_create_rooms=args.auto_create,
        default_scenario=Scenario(mix_preset=args.mix_preset),
        public_url=args.public_url,
    )


async def _serve_until_signalled(config: SimulatorConfig) -> None:
    """``serve`` with SIGTERM/SIGINT turned into cancellation, so a pod stops cleanly."""
    task = asyncio.create_task(serve(config))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve_until_signalled(config_from_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
