"""The simulator process: one aiohttp app serving TikTok's routes, the push WebSocket and ``/_sim/``.

Point the real TikTokLive client at it through the library's own settings::

    WebDefaults.tiktok_app_url = server.base_url
    WebDefaults.tiktok_webcast_url = server.base_url + "/webcast"
    TikTokLiveClient("alice", web_kwargs={"signer_kwargs": {"sign_api_base": server.base_url,
                                                           "sign_api_key": "test"}})
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any

from aiohttp import web

from .config import SimulatorConfig
from .control_api import add_control_routes
from .registry import RoomRegistry
from .request_log import REQUEST_LOG_KEY, RequestLog, record_requests
from .room import Room
from .scenario import Scenario
from .tiktok_routes import REGISTRY_KEY, add_tiktok_routes

log = logging.getLogger(__name__)


def build_app(registry: RoomRegistry) -> web.Application:
    """The aiohttp application (exposed for embedding, e.g. aiohttp's test client)."""
    app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[record_requests])
    app[REGISTRY_KEY] = registry
    app[REQUEST_LOG_KEY] = RequestLog()
    add_tiktok_routes(app)
    add_control_routes(app)
    return app


class SimulatorServer:
    """Runs the simulator on ``config.host:config.port`` (port 0 = a free port).

    Use ``async with SimulatorServer(config) as sim:`` or ``await start()`` / ``await stop()``.
    Rooms from ``config.rooms`` are created on start; more can be added with :meth:`add_room` or
    ``PUT /_sim/rooms/{username}``.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.registry = RoomRegistry(self.config)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.requests = RequestLog()  # what clients sent (replaced by the running app's log on start)

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        for username, scenario in self.config.rooms.items():
            await self.registry.put(username, scenario)
        app = build_app(self.registry)
        self.requests = app[REQUEST_LOG_KEY]
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.registry.close()
            raise
        self._runner = runner
        ports = [address[1] for address in runner.addresses if isinstance(address, tuple)]
        self._port = ports[0] if ports else self.config.port
        log.info("TikTok LIVE simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        """Abort every room's sockets, then shut the HTTP server down."""
        await self.registry.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` - the app URL, the sign server URL and (+``/webcast``) the webcast URL."""
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def tiktoklive_settings(self) -> dict[str, Any]:
        """Values to put into TikTokLive's ``WebDefaults`` / ``signer_kwargs`` to use this simulator."""
        return {
            "tiktok_app_url": self.base_url,
            "tiktok_webcast_url": self.base_url + "/webcast",
            "signer_kwargs": {"sign_api_base": self.base_url, "sign_api_key": self.config.sign_api_key or "test"},
        }

    async def add_room(self, username: str, scenario: Scenario | None = None) -> Room:
        """Create or replace a room (same as ``PUT /_sim/rooms/{username}``)."""
        return await self.registry.put(username, scenario or Scenario())

    def room(self, username: str) -> Room:
        room = self.registry.get(username)
        if room is None:
            raise KeyError(username)
        return room


async def serve(config: SimulatorConfig) -> None:
    """Run the simulator until cancelled; prints the base URL once listening."""
    async with SimulatorServer(config) as server:
        print(f"TikTok LIVE simulator listening on {server.base_url}", flush=True)
        for room in server.registry:
            print(f"  @{room.username}  room_id={room.room_id}  state={room.state.value}", flush=True)
        await asyncio.Event().wait()
