"""Fixtures of the tests that drive the REAL TikTokLive client against an in-process simulator,
and the admin client of a module's control plane.

A module using `recorder` names the event classes to record in its `RECORDED` tuple; a module
using `admin` defines a `control_plane` fixture (module-scoped), one using `livestreams` a
`cluster` (`tests.e2e_support.Cluster`), one using `redis_reader` its `services`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import aiohttp
import pytest
import redis
from kubernetes import client as k8s
from kubernetes import config
from TikTokLive import TikTokLiveClient
from TikTokLive.client.web.web_settings import WebDefaults

from tests.e2e_support import Cluster, Livestreams, Services
from tests.tiktoklive_recorder import Recorder
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.simulator import SimulatorConfig, SimulatorServer


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    """The Kubernetes client of the control plane's admin, for the module's fixtures and tests."""
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as api:
        yield api


@pytest.fixture
def livestreams(cluster: Cluster) -> Iterator[Livestreams]:
    """The test's Livestreams, deleted after it (their pods gone too)."""
    created = Livestreams(cluster)
    yield created
    created.delete_all()


@pytest.fixture(scope="module")
def redis_reader(services: Services) -> Iterator[redis.Redis]:
    """A client of the Redis the module's connectors publish to."""
    reader = redis.Redis.from_url(services.redis_url)
    yield reader
    reader.close()


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
