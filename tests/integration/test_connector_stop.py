"""SIGTERM to a Live connector process: exit 0 well inside a pod's grace period, whatever TikTok does.

The connector runs as its pod runs it (`python -m tiktok_service connector`, real Redis); the
simulator runs as a process of its own so the test can freeze it (SIGSTOP): a push server that
stops answering with the socket still open, as a silent network path or an overloaded server
does. The websockets closing handshake then waits for a close frame that never comes (several
`close_timeout`s, with nothing logged); the connector must abandon the socket instead, drain
its buffer and write its final status.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.access_support import redis_as
from tests.support import wait_until
from tiktok_service.connector import socket_shutdown
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.connector_status import ConnectorPhase, status_from_hash
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service_dev.processes import free_port

pytestmark = pytest.mark.slow

#: What a stop may take here: the bounded close, the receive loop's end, the drain of a small
#: buffer and the final status, with room for a loaded machine. The old stop took 10-13 s
#: against a frozen push server (websockets' close handshake, `close_timeout` 5 s, several times).
STOP_BOUND_S = socket_shutdown.CLOSE_TIMEOUT_S + socket_shutdown.LOOP_END_TIMEOUT_S + 3.0
#: Events a flooded connector has received before the stop (~2 s of the simulator's top speed here).
FLOOD_EVENTS = 5000


@dataclass
class SimulatorProcess:
    process: asyncio.subprocess.Process
    base_url: str
    username: str


@pytest.fixture
async def simulator_process() -> AsyncIterator[Callable[[int], Awaitable[SimulatorProcess]]]:
    """A simulator as a separate process with one live room (`rate` events per second)."""
    started: list[SimulatorProcess] = []

    async def start(rate: int) -> SimulatorProcess:
        port = free_port()
        username = f"user_{uuid.uuid4().hex[:10]}"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tiktok_service_dev.simulator",
            "--port",
            str(port),
            "--room",
            f"{username}:7:{rate}",
            "--log-level",
            "WARNING",
            stdout=asyncio.subprocess.DEVNULL,
        )
        sim = SimulatorProcess(process, f"http://127.0.0.1:{port}", username)
        started.append(sim)

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{sim.base_url}/_sim/health", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=20, what="the simulator process")
        return sim

    yield start
    for sim in started:
        if sim.process.returncode is None:
            sim.process.send_signal(signal.SIGCONT)
            sim.process.terminate()
            await sim.process.wait()


@dataclass
class ConnectorProcess:
    process: asyncio.subprocess.Process
    port: int
    livestream_id: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def health(self) -> dict[str, object]:
        try:
            async with httpx.AsyncClient() as http:
                body: dict[str, object] = (await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)).json()
                return body
        except (httpx.HTTPError, ValueError):
            return {}

    async def received(self) -> float:
        """Events taken off the socket so far (its /metrics)."""
        try:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2)).text
        except httpx.HTTPError:
            return 0.0
        prefix = "tiktok_connector_events_received_total{"
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.fixture
async def connector_process(
    redis_url: str, tmp_path: Path
) -> AsyncIterator[Callable[[SimulatorProcess], Awaitable[ConnectorProcess]]]:
    """Starts connector processes and owns them: any still running at the end is killed.

    Their log goes to a file from the start: a pipe read only at SIGTERM fills up under a
    flood and the connector would block writing its log.
    """
    started: list[ConnectorProcess] = []

    async def start(sim: SimulatorProcess) -> ConnectorProcess:
        port = free_port()
        livestream_id = str(uuid.uuid4())
        env = {
            **os.environ,
            "CONNECTOR_LIVESTREAM_ID": livestream_id,
            "CONNECTOR_USERNAME": sim.username,
            "CONNECTOR_REDIS_URL": redis_as(redis_url, Role.CONNECTOR),
            "CONNECTOR_SIGN_API_URL": sim.base_url,
            "CONNECTOR_SIGN_API_KEY": "test",
            "CONNECTOR_TIKTOK_APP_URL": sim.base_url,
            "CONNECTOR_TIKTOK_WEBCAST_URL": sim.base_url + "/webcast",
            "CONNECTOR_HTTP_PORT": str(port),
            "CONNECTOR_HEARTBEAT_INTERVAL_S": "0.2",
        }
        log_path = tmp_path / f"connector-{livestream_id}.log"
        with log_path.open("wb") as log_file:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tiktok_service",
                "connector",
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
            )
        connector = ConnectorProcess(process, port, livestream_id, log_path)
        started.append(connector)
        return connector

    yield start
    for connector in started:
        if connector.process.returncode is None:
            connector.process.kill()
            await connector.process.wait()


async def stopped_within(connector: ConnectorProcess, bound_s: float) -> tuple[int | None, float, str]:
    """SIGTERM, then the exit code (None: still running after `bound_s`), the time it took, the log."""
    started = time.monotonic()
    connector.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(connector.process.wait(), bound_s)
    except TimeoutError:
        connector.process.kill()
        await connector.process.wait()
        return None, time.monotonic() - started, connector.log()
    return connector.process.returncode, time.monotonic() - started, connector.log()


async def final_phase(redis_client: aioredis.Redis, livestream_id: str) -> ConnectorPhase:
    fields = await redis_client.hgetall(naming.connector_status_key(livestream_id))
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    return status_from_hash(text).phase


async def wait_live(connector: ConnectorProcess) -> None:
    async def live() -> bool:
        return (await connector.health()).get("phase") == ConnectorPhase.LIVE.value

    await wait_until(live, timeout=30, what="the connector live")


@pytest.mark.parametrize(
    ("rate", "freeze"),
    [
        pytest.param(50, True, id="push-server-silent"),
        # As fast as the simulator sends: websockets' receive queue is full when the stop comes,
        # so TikTok's answer to our close frame waits behind frames nobody reads any more.
        pytest.param(0, False, id="push-server-flooding"),
    ],
)
async def test_a_live_connector_exits_0_soon_after_sigterm_whatever_its_socket_is_doing(
    simulator_process: Callable[[int], Awaitable[SimulatorProcess]],
    connector_process: Callable[[SimulatorProcess], Awaitable[ConnectorProcess]],
    redis_client: aioredis.Redis,
    rate: int,
    freeze: bool,
) -> None:
    sim = await simulator_process(rate)
    connector = await connector_process(sim)
    await wait_live(connector)
    if not freeze:  # a sustained flood, not its first frames

        async def flooding() -> bool:
            return await connector.received() >= FLOOD_EVENTS

        await wait_until(flooding, timeout=30, what=f"{FLOOD_EVENTS} events received")
    if freeze:
        sim.process.send_signal(signal.SIGSTOP)  # the socket stays open; nothing answers any more

    code, took_s, log = await stopped_within(connector, STOP_BOUND_S)

    assert code == ExitCode.STOPPED, f"exit {code} after {took_s:.1f}s (bound {STOP_BOUND_S}s)\n{log[-3000:]}"
    assert "exiting with unpublished events" not in log, log[-3000:]
    assert await final_phase(redis_client, connector.livestream_id) is ConnectorPhase.STOPPED, log[-3000:]


async def test_a_live_connector_whose_push_server_answers_closes_cleanly_at_once(
    simulator_process: Callable[[int], Awaitable[SimulatorProcess]],
    connector_process: Callable[[SimulatorProcess], Awaitable[ConnectorProcess]],
    redis_client: aioredis.Redis,
) -> None:
    sim = await simulator_process(50)
    connector = await connector_process(sim)
    await wait_live(connector)

    code, took_s, log = await stopped_within(connector, STOP_BOUND_S)

    assert code == ExitCode.STOPPED, f"exit {code} after {took_s:.1f}s\n{log[-3000:]}"
    assert "abandoning it" not in log, log[-3000:]
    assert await final_phase(redis_client, connector.livestream_id) is ConnectorPhase.STOPPED, log[-3000:]
