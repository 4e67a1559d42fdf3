"""Connection options on real parts: proxies (tinyproxy, microsocks), sessions, room id, locale.

The connector runs in this process as its pod would run it, against the simulator and a real
Redis. What reached the simulator is read from the proxies' own logs and the simulator's
request log, not from the connector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY, generate_latest

from tests.proxies import TIKTOK_HOSTS, LocalProxy, MicroSocks, TinyProxy, namespaces_available
from tests.support import Running, expected_events, tiktok_ids, wait_until
from tiktok_service.connector import client_options, outcomes
from tiktok_service.domain import naming
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.domain.proxies import start_index
from tiktok_service.settings import ConnectorSettings
from tiktok_service_dev.processes import free_port
from tiktok_service_dev.simulator.room import RoomState
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow

PASSWORD = "pr0xy-Pa55.w0rd"  # tinyproxy's BasicAuth takes [A-Za-z0-9._-] only
SOCKS_PASSWORD = "s0cks:P@ss/w0rd"  # ':', '@' and '/' must survive URL quoting on both transports
SESSION_ID = "5e55104d0c0ffee0123456789abcdef0"
TT_TARGET_IDC = "useast2a"


def new_name() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def start(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[ConnectorSettings], Running]]:
    # The connector hands TikTokLive its session consent through the environment: undone after the test.
    monkeypatch.delenv(client_options.SESSION_CONSENT_VARIABLE, raising=False)
    running: list[Running] = []

    def starter(settings: ConnectorSettings) -> Running:
        running.append(connector := Running(settings, redis_client))
        return connector

    yield starter
    for connector in running:
        if not connector.task.done():
            connector.runner.stop()
            await asyncio.wait_for(connector.task, 30)


@pytest.fixture
def settings_for(simulator: SimulatorServer, redis_url: str) -> Callable[..., ConnectorSettings]:
    def make(username: str, *, app_host: str = "127.0.0.1", **overrides: Any) -> ConnectorSettings:
        web = f"http://{app_host}:{simulator.port}"
        values: dict[str, Any] = {
            "livestream_id": str(uuid.uuid4()),
            "username": username,
            "redis_url": redis_url,
            "sign_api_url": simulator.base_url,
            "sign_api_key": "test",
            "tiktok_app_url": web,
            "tiktok_webcast_url": web + "/webcast",
            "http_port": 0,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.2,
            "heartbeat_interval_s": 0.2,
            "watchdog_interval_s": 0.1,
            "connect_timeout_s": 15,
            **overrides,
        }
        return ConnectorSettings(**values)

    return make


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    yield lambda name: tmp_path / name


async def live_room(simulator: SimulatorServer, username: str, events: int = 30) -> None:
    await simulator.add_room(username, Scenario(seed=3, rate=0, batch=10, live_end_after=events))


def visits(simulator: SimulatorServer, username: str) -> list[str]:
    """Paths of requests about `username` (live page, room API) that reached the simulator."""
    return [r.path for r in simulator.requests if username in r.path or r.query.get("uniqueId") == username]


def ordered(livestream_id: str, first: str, second: str) -> str:
    """A two-proxy list in which `first` is where the connector starts (its stable start index)."""
    return "\n".join([first, second] if start_index(livestream_id, 2) == 0 else [second, first])


async def assert_no_secret_anywhere(
    secrets: list[str], caplog: pytest.LogCaptureFixture, redis: aioredis.Redis, connector: Running
) -> None:
    status = await redis.hgetall(naming.connector_status_key(connector.settings.livestream_id))
    status_text = " ".join(f"{k!r}={v!r}" for k, v in status.items())
    metrics_text = generate_latest(REGISTRY).decode()
    logged = "\n".join(f"{record.getMessage()} {vars(record)!r}" for record in caplog.records)
    for secret in secrets:
        assert secret not in logged
        assert secret not in status_text
        assert secret not in metrics_text
        assert secret not in connector.runner.status.last_error


def collect_leaked_sockets() -> list[str]:
    """Collect garbage now and return what it reported unraisable (unclosed sockets), instead of failing the test."""
    leaked: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda hook: leaked.append(f"{type(hook.exc_value).__name__}: {hook.exc_value}")
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return leaked


# -- proxies ------------------------------------------------------------------------------------


async def test_web_requests_and_the_websocket_go_through_an_http_proxy_with_basic_auth(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
) -> None:
    username = new_name()
    await live_room(simulator, username)
    with TinyProxy(proxy_dir("tinyproxy"), username="alice", password=PASSWORD) as proxy:
        # The web routes under "localhost", the WebSocket under 127.0.0.1: the proxy log tells them apart.
        settings = settings_for(username, app_host="localhost", proxies=proxy.url())
        assert await start(settings).exit_code() == ExitCode.LIVE_ENDED

        requests = proxy.requests()
    port = simulator.port
    assert any(line.startswith(f"GET http://localhost:{port}/@{username}/live") for line in requests), requests
    assert any(line.startswith(f"GET http://localhost:{port}/webcast/room/check_alive/") for line in requests)
    assert any(line.startswith(f"CONNECT 127.0.0.1:{port} ") for line in requests), "the WebSocket tunnel"


async def test_web_requests_and_the_websocket_go_through_a_socks5_proxy_with_a_password(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
) -> None:
    username = new_name()
    await live_room(simulator, username)
    with MicroSocks(proxy_dir("socks"), username="bob", password=SOCKS_PASSWORD) as proxy:
        settings = settings_for(username, app_host="localhost", proxies=proxy.url())
        assert await start(settings).exit_code() == ExitCode.LIVE_ENDED

        connections = proxy.connections()
    assert f"localhost:{simulator.port}" in connections, "web requests (the proxy resolved the name)"
    assert f"127.0.0.1:{simulator.port}" in connections, "the WebSocket"


async def test_through_a_proxy_undecodable_frames_are_dropped_and_counted_and_the_socket_kept(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
    redis_client: aioredis.Redis,
) -> None:
    username = new_name()
    scenario = Scenario(seed=9, rate=300, malformed=["bad_gzip", "not_pushframe"], live_end_after=300, fixtures=True)
    await simulator.add_room(username, scenario)
    dropped = metric("tiktok_connector_events_dropped_total", reason="malformed_frame")
    with MicroSocks(proxy_dir("socks"), username="bob", password=SOCKS_PASSWORD) as proxy:
        settings = settings_for(username, proxies=proxy.url())
        connector = start(settings)
        assert await connector.exit_code() == ExitCode.LIVE_ENDED
        assert f"127.0.0.1:{simulator.port}" in proxy.connections()

    sent = list(simulator.room(username).sent_json()["messages"])
    assert set(expected_events(sent)) <= set(await tiktok_ids(redis_client, settings.livestream_id))
    assert metric("tiktok_connector_events_dropped_total", reason="malformed_frame") > dropped
    assert connector.runner.status.reconnects == 0, "one socket from start to live end"


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_with_its_proxy_stopped_the_connector_never_reaches_tiktok(
    kind: str,
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
) -> None:
    username = new_name()
    await live_room(simulator, username)
    proxy: LocalProxy = (TinyProxy if kind == "http" else MicroSocks)(proxy_dir(kind), username="u", password=PASSWORD)
    url = proxy.url()  # never started: nothing listens on its port
    before = metric("tiktok_connector_reconnects_total", reason="proxy_error")

    connector = start(settings_for(username, proxies=url, max_reconnects=2))

    assert await connector.exit_code() == ExitCode.PROXY
    assert visits(simulator, username) == [], "no request reached the simulator around the proxy"
    assert simulator.room(username).stats.connected == 0
    assert metric("tiktok_connector_reconnects_total", reason="proxy_error") >= before + 2


async def test_a_dead_proxy_where_the_list_starts_is_rotated_past(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    username = new_name()
    await live_room(simulator, username)
    livestream_id = str(uuid.uuid4())
    dead = f"http://carol:{PASSWORD}@127.0.0.1:{free_port()}"
    rotations = metric("tiktok_connector_proxy_rotations_total", reason="proxy_error")
    with TinyProxy(proxy_dir("good"), username="alice", password=PASSWORD) as good:
        settings = settings_for(username, livestream_id=livestream_id, proxies=ordered(livestream_id, dead, good.url()))
        connector = start(settings)
        assert await connector.exit_code() == ExitCode.LIVE_ENDED
        assert any(f"/@{username}/live" in line for line in good.requests())
    assert metric("tiktok_connector_proxy_rotations_total", reason="proxy_error") == rotations + 1
    assert connector.runner.status.reconnects >= 1
    (rotation,) = [record for record in caplog.records if record.getMessage() == "next proxy"]
    assert vars(rotation)["from"].startswith("http://carol:***@127.0.0.1:"), "the rotation is logged, redacted"
    await assert_no_secret_anywhere([PASSWORD], caplog, redis_client, connector)


@pytest.mark.parametrize("wrong", ["http", "socks5"])
async def test_wrong_proxy_credentials_are_a_counted_failure_and_the_next_proxy_is_used(
    wrong: str,
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    username = new_name()
    await live_room(simulator, username)
    livestream_id = str(uuid.uuid4())
    bad_password = "not-the-Passw0rd"
    with (
        TinyProxy(proxy_dir("http"), username="alice", password=PASSWORD) as http_proxy,
        MicroSocks(proxy_dir("socks5"), username="bob", password=SOCKS_PASSWORD) as socks_proxy,
    ):
        refusing, accepting = (http_proxy, socks_proxy) if wrong == "http" else (socks_proxy, http_proxy)
        proxies = ordered(livestream_id, refusing.url(password=bad_password), accepting.url())
        before = sum(metric("tiktok_connector_proxy_rotations_total", reason=kind.value) for kind in outcomes.Kind)
        connector = start(settings_for(username, livestream_id=livestream_id, proxies=proxies))

        assert await connector.exit_code() == ExitCode.LIVE_ENDED
        after = sum(metric("tiktok_connector_proxy_rotations_total", reason=kind.value) for kind in outcomes.Kind)
        assert after == before + 1, "one failure through the refusing proxy, then the next one"
        assert connector.runner.status.reconnects >= 1
    # Nothing is left open to the proxy that refused the login: httpcore's own SOCKS connection
    # did (its socket waited for the garbage collector, then warned in whichever test came next).
    assert collect_leaked_sockets() == []
    await assert_no_secret_anywhere([PASSWORD, SOCKS_PASSWORD, bad_password], caplog, redis_client, connector)


# -- sessions -----------------------------------------------------------------------------------


@pytest.mark.skipif(not namespaces_available(), reason="needs unshare (a private /etc/hosts for the proxy)")
async def test_a_session_reaches_tiktoks_web_routes_the_sign_server_and_the_websocket_as_on_tiktok(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TikTokLive sets the session cookies for `.tiktok.com`: the web routes get them only under
    TikTok's names, so the simulator is reached as www.tiktok.com through a proxy that resolves it."""
    caplog.set_level(logging.DEBUG)
    username = new_name()
    await live_room(simulator, username)
    with TinyProxy(proxy_dir("tinyproxy"), username="alice", password=PASSWORD, hosts=TIKTOK_HOSTS) as proxy:
        port = simulator.port
        settings = settings_for(
            username,
            proxies=proxy.url(),
            tiktok_app_url=f"http://www.tiktok.com:{port}",
            tiktok_webcast_url=f"http://webcast.tiktok.com:{port}/webcast",
            session_id=SESSION_ID,
            tt_target_idc=TT_TARGET_IDC,
            CONNECTOR_SESSION_SIGN_HOST=f"127.0.0.1:{port}",
        )
        connector = start(settings)
        assert await connector.exit_code() == ExitCode.LIVE_ENDED
        assert any(line.startswith(f"GET http://www.tiktok.com:{port}/@{username}/live") for line in proxy.requests())

    (page,) = [r for r in simulator.requests if r.path == f"/@{username}/live"]
    assert page.host == f"www.tiktok.com:{port}"
    assert page.cookies["sessionid"] == SESSION_ID
    assert page.cookies["tt-target-idc"] == TT_TARGET_IDC
    alive = [r for r in simulator.requests if r.path.startswith("/webcast/room/check_alive")]
    assert alive[-1].cookies["sessionid"] == SESSION_ID
    assert alive[-1].query["user_is_login"] == "true"
    sign = [r for r in simulator.requests if r.path.startswith("/webcast/fetch")][-1]
    assert (sign.query["session_id"], sign.query["tt_target_idc"]) == (SESSION_ID, TT_TARGET_IDC)
    socket = [r for r in simulator.requests if r.path.startswith("/webcast/im/")][-1]
    assert f"sessionid={SESSION_ID};" in socket.headers["Cookie"]
    await assert_no_secret_anywhere([SESSION_ID, SESSION_ID[:8], PASSWORD], caplog, redis_client, connector)


@pytest.mark.skipif(not namespaces_available(), reason="needs unshare (a private /etc/hosts for the proxy)")
@pytest.mark.parametrize("logged_in", [True, False])
async def test_an_age_restricted_room_opens_to_a_session_and_refuses_anonymous_viewers(
    logged_in: bool,
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
    proxy_dir: Callable[[str], Path],
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=3, rate=0, batch=10, live_end_after=30, age_restricted=True))
    session: dict[str, Any] = {"session_id": SESSION_ID, "tt_target_idc": TT_TARGET_IDC} if logged_in else {}
    with TinyProxy(proxy_dir("tinyproxy"), username="alice", password=PASSWORD, hosts=TIKTOK_HOSTS) as proxy:
        port = simulator.port
        settings = settings_for(
            username,
            proxies=proxy.url(),
            tiktok_app_url=f"http://www.tiktok.com:{port}",
            tiktok_webcast_url=f"http://webcast.tiktok.com:{port}/webcast",
            CONNECTOR_SESSION_SIGN_HOST=f"127.0.0.1:{port}",
            **session,
        )
        connector = start(settings)
        code = await connector.exit_code()

    if logged_in:
        assert code == ExitCode.LIVE_ENDED
        assert simulator.room(username).stats.connections_opened == 1
    else:
        room_id = str(simulator.room(username).room_id)
        assert code == ExitCode.AGE_RESTRICTED
        assert connector.runner.status.reason == "age_restricted"
        assert simulator.room(username).stats.connections_opened == 0
        signs = [r for r in simulator.requests if r.path.startswith("/webcast/fetch") and r.query["room_id"] == room_id]
        assert signs == [], "no sign request spent on a room we may not watch"


# -- room id and locale -------------------------------------------------------------------------


async def test_a_configured_room_id_skips_the_room_lookup(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
) -> None:
    username = new_name()
    await live_room(simulator, username)
    room_id = simulator.room(username).room_id

    connector = start(settings_for(username, room_id=room_id))

    assert await connector.exit_code() == ExitCode.LIVE_ENDED
    assert visits(simulator, username) == [], "neither the live page nor the room API was asked"
    assert connector.runner.status.room_id == room_id


async def test_a_configured_room_id_is_used_only_until_its_live_ends(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=3, rate=0, batch=10, live_end_after=20))
    room = simulator.room(username)
    settings = settings_for(username, room_id=room.room_id, wait_for_live=True, live_poll_interval_s=0.2)
    connector = start(settings)

    await wait_until(lambda: room.state is not RoomState.LIVE, timeout=30, what="the first LIVE's end")
    await wait_until(lambda: connector.runner.room_id is None, timeout=30, what="the configured room id dropped")
    assert visits(simulator, username) == [], "the first LIVE was joined by its configured room id"
    await room.set_live(True)  # the user goes live again (on TikTok: with a new room id)

    await wait_until(lambda: room.stats.connections_opened == 2, timeout=30, what="the second LIVE joined")
    assert visits(simulator, username), "the second LIVE's room was looked up by username"


async def test_a_stale_configured_room_id_falls_back_to_the_username(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
) -> None:
    username = new_name()
    await simulator.add_room(username, Scenario(seed=3, rate=5, batch=10))
    room = simulator.room(username)
    stale = room.room_id - 1  # an earlier LIVE's room: TikTok says it is not alive
    connector = start(settings_for(username, room_id=stale, wait_for_live=True, live_poll_interval_s=0.2))

    await wait_until(
        lambda: connector.runner.status.room_id == room.room_id, timeout=30, what="the current room joined"
    )
    stale_checks = [
        r for r in simulator.requests.matching("/webcast/room/check_alive") if r.query.get("room_ids") == str(stale)
    ]
    assert len(stale_checks) == 1, "the stale room id was asked about once, then the username was used"
    assert connector.runner.room_id is None


async def test_the_web_client_speaks_the_configured_language_region_and_time_zone(
    simulator: SimulatorServer,
    settings_for: Callable[..., ConnectorSettings],
    start: Callable[[ConnectorSettings], Running],
) -> None:
    username = new_name()
    await live_room(simulator, username)
    settings = settings_for(username, language="de", region="AT", timezone="Europe/Vienna")

    assert await start(settings).exit_code() == ExitCode.LIVE_ENDED

    room_id = str(simulator.room(username).room_id)
    alive = [r for r in simulator.requests.matching("/webcast/room/check_alive") if r.query.get("room_ids") == room_id]
    assert {k: alive[-1].query[k] for k in ("app_language", "browser_language", "region", "tz_name")} == {
        "app_language": "de",
        "browser_language": "de-AT",
        "region": "AT",
        "tz_name": "Europe/Vienna",
    }
    assert alive[-1].headers["Accept-Language"].startswith("de-AT")
    socket = [r for r in simulator.requests if r.path.startswith("/webcast/im/") and r.query.get("room_id") == room_id]
    assert (socket[-1].query["webcast_language"], socket[-1].query["tz_name"]) == ("de", "Europe/Vienna")
