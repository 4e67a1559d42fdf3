"""Fixtures of the tests that drive the REAL TikTokLive client against an in-process simulator.

A module using `recorder` names the event classes to record in its `RECORDED` tuple.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import aiohttp
import pytest
from TikTokLive import TikTokLiveClient
from TikTokLive.client.web.web_settings import WebDefaults

from tests.tiktoklive_recorder import Recorder
from tiktok_service_dev.simulator import SimulatorConfig, SimulatorServer


@pytest.fixture
def tiktoklive_defaults() -> Iterator[None]:
    saved = (WebDefaults.tiktok_app_url, WebDefaults.tiktok_webcast_url)
    yield
    WebDefaults.tiktok_app_url, WebDefaults.tiktok_webcast_url = saved


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimulatorConfig(port=0)) as server:
        yield server


@pytest.fixture
async def http(sim: SimulatorServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.base_url) as session:
        yield session


@pytest.fixture
async def recorder(
    request: pytest.FixtureRequest, sim: SimulatorServer, tiktoklive_defaults: None
) -> AsyncIterator[Callable[[str], Recorder]]:
    classes: Sequence[type] = request.module.RECORDED
    clients: list[TikTokLiveClient] = []

    def make(username: str) -> Recorder:
        settings = sim.tiktoklive_settings()
        WebDefaults.tiktok_app_url = settings["tiktok_app_url"]
        WebDefaults.tiktok_webcast_url = settings["tiktok_webcast_url"]
        client = TikTokLiveClient(unique_id=username, web_kwargs={"signer_kwargs": settings["signer_kwargs"]})
        clients.append(client)
        return Recorder(client, classes)

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await client.disconnect()
        await client.web.close()  # client.close() would call run_until_complete inside a running loop
        # TikTokLive never closes the sign server's own httpx client: without this, every sign request
        # leaks a socket (ResourceWarning).
        await client.web.signer.sdk_client.get_async_httpx_client().aclose()
