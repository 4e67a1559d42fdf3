"""The whole product, started once for the chaos suite, with a handle on every part a fault touches.

A real control plane (etcd, kube-apiserver, controller-manager, scheduler), two node agents that
run connector pods as real `tiktok-service connector` processes, the operator (its own thread,
restartable), a persister (restartable), the TikTok LIVE simulator, PostgreSQL, and Redis as a
primary with a real replica behind an address that follows the primary (`RedisPair`), so the
same stack can lose its Redis primary. The simulator and the persister run on a background
event loop; everything else is a process or a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.e2e_support import (
    Background,
    BackgroundLoop,
    Cluster,
    connector_bin_dir,
    create_database,
    prepared_namespace,
)
from tests.redis_failover import RedisPair
from tiktok_service.settings import OperatorSettings, PersisterSettings
from tiktok_service_dev import operator_harness, persister_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.node_agent import NodeAgent
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.config import SimulatorConfig
from tiktok_service_dev.simulator.room import Room
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

OPERATOR_USER = "operator"
NODE_NAMES = ("chaos-a", "chaos-b")
VENV_BIN = Path(sys.executable).parent


def _connector_bin(root: Path) -> Path:
    """The node agents' `tiktok-service`: the venv's, with one replica to WAIT for after each batch.

    `connector_bin_dir` turns the health port off (every local pod shares the host network);
    `CONNECTOR_REPLICAS_TO_WAIT=1` is what a deployment with a Redis replica sets, so a batch the
    replica did not confirm stays in the connector's replay window for a failover.
    """
    bin_dir = connector_bin_dir(root, VENV_BIN)
    script = bin_dir / "tiktok-service"
    text = script.read_text().replace(
        "export CONNECTOR_HTTP_PORT=0\n", "export CONNECTOR_HTTP_PORT=0\nexport CONNECTOR_REPLICAS_TO_WAIT=1\n"
    )
    script.write_text(text)
    return bin_dir


async def _serve_persister(settings: PersisterSettings, stop: asyncio.Event) -> None:
    async with persister_harness.running(settings, name="chaos"):
        await stop.wait()


class Operator:
    """The running operator; `stop()` then `start()` is a restart (the new one remembers nothing)."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.thread: operator_harness.OperatorThread | None = None

    def start(self) -> None:
        assert self.thread is None
        self.thread = operator_harness.OperatorThread(self.settings).start()

    def stop(self) -> None:
        if self.thread is not None:
            thread, self.thread = self.thread, None
            thread.stop()


@dataclass
class Stack:
    """Every part of the running product; faults act on these attributes."""

    bg: BackgroundLoop
    redis: RedisPair
    postgres: LocalPostgres
    database_url: str
    simulator: SimulatorServer
    persister_settings: PersisterSettings
    control_plane: ControlPlane
    admin: client.ApiClient
    cluster: Cluster
    operator: Operator
    bin_dir: Path
    work_dir: Path
    agents: dict[str, NodeAgent] = field(default_factory=dict)
    persister: Background | None = None

    # -- Redis -------------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def redis_primary(self) -> LocalRedis:
        """The server the front door reaches now (the replica once it was promoted)."""
        assert self.redis.front is not None
        front_port = self.redis.front._target  # the pair has no public accessor
        return self.redis.primary if front_port == self.redis.primary.port else self.redis.replica

    # -- the persister -------------------------------------------------------------------------

    def start_persister(self) -> None:
        assert self.persister is None
        self.persister = Background(self.bg, partial(_serve_persister, self.persister_settings))

    def stop_persister(self) -> None:
        if self.persister is not None:
            persister, self.persister = self.persister, None
            persister.stop()

    def restart_dead_persister(self) -> str | None:
        """If the persister died (a bug: it retries every outage), what killed it; a new one is started,
        as Kubernetes would restart its pod."""
        if self.persister is None or not self.persister._future.done():
            return None
        exc = self.persister._future.exception()
        self.persister = None
        self.start_persister()
        return f"persister crashed ({type(exc).__name__}: {exc})" if exc else "persister stopped by itself"

    # -- node agents ---------------------------------------------------------------------------

    def start_agent(self, name: str) -> NodeAgent:
        agent = NodeAgent(
            self.control_plane.kubeconfig_path,
            name,
            python_bin_dir=self.bin_dir,
            work_dir=self.work_dir / f"{name}-{uuid.uuid4().hex[:4]}",
            heartbeat_interval_s=2.0,
            stop_grace_s=1.0,
            crash_backoff_base_s=1.0,
        ).start()
        self.agents[name] = agent
        self.cluster.agents.append(agent)
        return agent

    def stop_agent(self, name: str) -> None:
        agent = self.agents.pop(name)
        self.cluster.agents.remove(agent)
        agent.stop()

    def stop_agents(self) -> None:
        for name in list(self.agents):
            self.stop_agent(name)

    # -- the simulator -------------------------------------------------------------------------

    def add_room(self, username: str, scenario: Scenario) -> Room:
        return self.bg.run(self.simulator.add_room(username, scenario))

    def sent(self, username: str) -> list[dict[str, Any]]:
        return list(self.bg.call(lambda: self.simulator.room(username).sent_json()["messages"]))

    def events_sent(self, username: str) -> int:
        return int(self.bg.call(lambda: self.simulator.room(username).stats_json()["events_sent"]))

    def resume_room(self, username: str, more: int) -> None:
        self.bg.call(lambda: self.simulator.room(username).resume(more=more))


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """Start everything (about half a minute), yield it, stop everything in reverse order."""
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tiktok-chaos-")))
        pair = stack.enter_context(RedisPair())
        postgres = stack.enter_context(LocalPostgres())
        bg = BackgroundLoop()
        stack.callback(bg.close)
        database_url = bg.run(create_database(postgres.dsn, f"chaos_{uuid.uuid4().hex[:8]}"))
        simulator = SimulatorServer(SimulatorConfig(port=0))
        bg.run(simulator.start())
        stack.callback(lambda: bg.run(simulator.stop()))
        control_plane = ControlPlane(extra_users=[OPERATOR_USER])
        control_plane.start()
        stack.callback(control_plane.stop)
        kubeconfig = str(control_plane.kubeconfig_path)
        admin = stack.enter_context(config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
        operator_harness.install_crds(admin)
        namespace = prepared_namespace(admin, prefix="chaos", operator_user=OPERATOR_USER, redis_url=pair.url)
        base_url = simulator.base_url
        settings = operator_harness.quick_settings(
            kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
            namespace=namespace,
            redis_url=pair.url,
            database_url=database_url,
            sign_api_url=base_url,
            tiktok_app_url=base_url,
            tiktok_webcast_url=base_url + "/webcast",
        )
        running = Stack(
            bg=bg,
            redis=pair,
            postgres=postgres,
            database_url=database_url,
            simulator=simulator,
            persister_settings=persister_harness.quick_settings(pair.url, database_url),
            control_plane=control_plane,
            admin=admin,
            cluster=Cluster(admin, namespace, []),
            operator=Operator(settings),
            bin_dir=_connector_bin(work_dir / "bin"),
            work_dir=work_dir,
        )
        stack.callback(running.stop_persister)
        running.start_persister()
        for name in NODE_NAMES:
            running.start_agent(name)
        stack.callback(running.stop_agents)
        stack.callback(running.operator.stop)
        running.operator.start()
        yield running
