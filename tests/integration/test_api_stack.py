"""The API on the real stack: control plane, a node, operator, persister, simulator, Redis, PostgreSQL.

Every test runs twice: with the node agent running connector pods as processes, and on a real
kubelet with containerd, connector pods from the product image (tests/kubelet_support.py).

The API runs in-process under uvicorn (on the test's event loop, like the simulator and the
persister) with a token bound to exactly `deploy/api-rbac.yaml`'s Role; the operator has
its own token bound to its own Role. Everything is shared by the module; each test uses
its own TikTok users. Tests that only need events in a livestream's Redis stream write
them there directly (as a connector would), on a livestream whose connector is live but
idle; the first test goes the whole way: simulator -> connector pod -> Redis -> SSE.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import hypothesis
import pytest
import redis
import redis.asyncio as aioredis
import schemathesis
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from schemathesis.generation import GenerationMode

from tests.access_support import ROLE_PASSWORDS, database_as, redis_as
from tests.cluster_support import started_control_plane
from tests.e2e_support import (
    NODE_KINDS,
    Cluster,
    Livestreams,
    Node,
    connector_bin_dir,
    connector_image_settings,
    node_kind_or_skip,
    pods_host,
    pods_redis,
    started_node,
)
from tests.support import expected_events, wait_until
from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.api import keys, repository
from tiktok_service.api.main import ApiServer
from tiktok_service.database.migrate import migrate
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.events import Envelope, EventType
from tiktok_service.operator import model
from tiktok_service.settings import ApiSettings
from tiktok_service_dev import operator_harness, persister_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.config import SimulatorConfig
from tiktok_service_dev.simulator.scenario import Scenario
from tiktok_service_dev.simulator.server import SimulatorServer

pytestmark = pytest.mark.slow

OPERATOR_USER, API_USER = "operator", "api"
VENV_BIN = Path(sys.executable).parent
MARKERS = {"tiktok.connect", "tiktok.disconnect"}
DEADLINE_S = 60.0
JSON = "application/json"


# -- the stack -----------------------------------------------------------------------------------


@dataclass
class Sse:
    id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Api:
    base_url: str
    http: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)  # workspace -> key

    def auth(self, workspace: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[workspace]}"}


@dataclass
class Stack:
    api: Api
    admin: client.ApiClient
    namespace: str
    redis: aioredis.Redis
    database_url: str
    simulator: SimulatorServer
    livestreams: Livestreams
    server: ApiServer

    def resource(self, name: str) -> dict[str, Any] | None:
        return self.livestreams.cluster.get(name)

    def phase(self, name: str) -> str | None:
        return self.livestreams.cluster.phase(name)

    async def connect(self, workspace: str, username: str, **options: Any) -> httpx.Response:
        response = await self.api.http.post(
            "/api/livestreams/connect", json={"username": username, **options}, headers=self.api.auth(workspace)
        )
        if response.status_code == 201:
            self.livestreams.adopt(response.json()["name"])
        return response

    async def live_livestream(self, username: str, scenario: Scenario | None = None) -> dict[str, Any]:
        """A connected livestream whose connector is Live (by default in an idle room)."""
        await self.simulator.add_room(username, scenario or Scenario(total=0))
        response = await self.connect("acme", username)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        await wait_until(lambda: self.phase(body["name"]) == "Live", timeout=DEADLINE_S, what=f"{username} live")
        return body

    async def stream_ids(self, livestream_id: str) -> list[str]:
        entries = await self.redis.xrange(naming.livestream_stream(livestream_id))
        return [entry_id.decode() for entry_id, _ in entries]

    async def publish(self, livestream_id: str, count: int, event_type: EventType = EventType.COMMENT) -> list[str]:
        """XADD `count` events to the livestream's stream as a connector does; their entry ids."""
        ids = []
        for _ in range(count):
            envelope = Envelope(
                id=str(uuid.uuid4().int >> 64),
                type=event_type,
                livestream_id=livestream_id,
                room_id=1,
                time_ms=1_700_000_000_000,
                data={"comment": "hi"},
            )
            fields = {"type": envelope.type.value, "id": envelope.id, "event": envelope.encode()}
            ids.append((await self.redis.xadd(naming.livestream_stream(livestream_id), fields)).decode())
        return ids


class Subscription:
    """An open SSE response read as an EventSource would (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.status_code
        self.response = response
        self.lines = response.aiter_lines()

    async def opened(self) -> None:
        """Wait for the server's first bytes: from then on the subscription is in place."""
        async with asyncio.timeout(DEADLINE_S):
            async for line in self.lines:
                if line == "":
                    return
        raise AssertionError("the stream closed before it opened")

    async def events(self) -> AsyncIterator[Sse]:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line == "":
                if "data" in fields or "event" in fields:
                    yield Sse(fields.get("id"), fields.get("event"), fields.get("data", ""))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value

    async def collect(self, count: int | None = None, *, timeout: float = DEADLINE_S) -> list[Sse]:
        """Read until `count` events (None: until the server ends the stream)."""
        got: list[Sse] = []
        async with asyncio.timeout(timeout):
            async for event in self.events():
                got.append(event)
                if count is not None and len(got) == count:
                    break
        return got


@contextlib.asynccontextmanager
async def subscribe(
    http: httpx.AsyncClient, livestream_id: str, headers: dict[str, str], **params: Any
) -> AsyncIterator[Subscription]:
    url = f"/api/livestreams/{livestream_id}/events"
    async with http.stream("GET", url, params=params, headers=headers) as response:
        yield Subscription(response)


@contextlib.asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[tuple[ApiServer, str]]:
    """The API under uvicorn on a free loopback port; stopped (as on SIGTERM) on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = ApiServer(settings)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), timeout=30, what="the API to start")
        assert not task.done(), "the API did not start"
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


def api_settings(cp: ControlPlane, namespace: str, redis_url: str, database_url: str) -> ApiSettings:
    return ApiSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": 0,
            "redis_url": redis_url,
            "database_url": database_url,
            "kubeconfig": cp.kubeconfig_for(API_USER),
            "namespace": namespace,
            "sse_block_ms": 200,
            "sse_phase_check_s": 0.3,
            "sse_ping_interval_s": 1.0,
            "shutdown_timeout_s": 10,
            "docs": True,  # the fuzz test reads /openapi.json
        }
    )


def bind_role(admin: client.ApiClient, *, namespace: str, user: str, manifest: str) -> None:
    """Bind the Role of one deploy/ file (and nothing else) to `user`."""
    (role,) = [
        doc for doc in operator_harness.manifests(operator_harness.DEPLOY_DIR / manifest) if doc["kind"] == "Role"
    ]
    operator_harness.apply(admin, [role], namespace=namespace)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{role['metadata']['name']}-{user}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    operator_harness.apply(admin, [binding], namespace=namespace)


def create_namespace(admin: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


async def create_database(dsn: str) -> str:
    name = f"api_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = dsn.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    return url


async def make_key(database_url: str, workspace: str) -> str:
    new = keys.generate()
    conn = await asyncpg.connect(database_url)
    try:
        await repository.insert_key(
            conn, workspace_id=workspace, name="test", key_hash=new.digest, key_prefix=new.shown
        )
    finally:
        await conn.close()
    return new.secret


@pytest.fixture(scope="module", params=NODE_KINDS)
def node_kind(request: pytest.FixtureRequest) -> str:
    """The whole module runs on the local node agent (pods as processes) and on a real kubelet."""
    return node_kind_or_skip(request.param)


@pytest.fixture(scope="module")
def control_plane(node_kind: str) -> Iterator[ControlPlane]:
    """A fresh one per node kind: nothing of one run (nodes, pods, events) is seen by the other."""
    with started_control_plane(extra_users=[OPERATOR_USER, API_USER]) as cp:
        yield cp


@pytest.fixture(scope="module")
def node(node_kind: str, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    bin_dir = connector_bin_dir(tmp_path_factory.mktemp("connector-bin"), VENV_BIN)
    work_dir = tmp_path_factory.mktemp("api-node")
    with started_node(node_kind, control_plane, "api-node", bin_dir=bin_dir, work_dir=work_dir) as started:
        yield started


@pytest.fixture(scope="module")
async def backing(
    node: Node, redis_server: LocalRedis, postgres_server: LocalPostgres
) -> AsyncIterator[tuple[str, str]]:
    """Redis (where the node's pods reach it, with each component's ACL user) and PostgreSQL."""
    if not postgres_server.running:
        postgres_server.start()
    with pods_redis(node, redis_server) as server:
        if server is not redis_server:
            await apply_redis_users(server.url, ROLE_PASSWORDS)
        flusher = redis.Redis.from_url(server.url)
        flusher.flushall()  # earlier modules' streams would flow into this module's database
        flusher.close()
        yield server.url, postgres_server.dsn


@pytest.fixture(scope="module")
async def pods_simulator(node: Node, simulator: SimulatorServer) -> AsyncIterator[SimulatorServer]:
    """The session's simulator for processes of this machine; one on a real node's address for its pods."""
    host = pods_host(node)
    if host == simulator.config.host:
        yield simulator
        return
    async with SimulatorServer(SimulatorConfig(host=host, port=0)) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    control_plane: ControlPlane,
    admin: client.ApiClient,
    backing: tuple[str, str],
    pods_simulator: SimulatorServer,
    node: Node,
) -> AsyncIterator[Stack]:
    redis_url, dsn = backing
    database_url = await create_database(dsn)
    namespace = create_namespace(admin, "api")
    bind_role(admin, namespace=namespace, user=OPERATOR_USER, manifest="operator-rbac.yaml")
    bind_role(admin, namespace=namespace, user=API_USER, manifest="api-rbac.yaml")
    client.CoreV1Api(admin).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="tiktok-connector"),
            string_data={"redis-url": redis_as(redis_url, Role.CONNECTOR)},
        ),
    )
    simulator = pods_simulator
    base = simulator.base_url
    operator_settings = operator_harness.quick_settings(
        kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
        namespace=namespace,
        redis_url=redis_as(redis_url, Role.OPERATOR),
        database_url=database_as(database_url, Role.OPERATOR),
        sign_api_url=base,
        tiktok_app_url=base,
        tiktok_webcast_url=base + "/webcast",
        **connector_image_settings(node),
    )
    redis_client = aioredis.from_url(redis_url)
    with operator_harness.OperatorThread(operator_settings):
        async with (
            persister_harness.running(
                persister_harness.quick_settings(
                    redis_as(redis_url, Role.PERSISTER), database_as(database_url, Role.PERSISTER)
                ),
                name="api",
            ),
            running_api(
                api_settings(
                    control_plane, namespace, redis_as(redis_url, Role.API), database_as(database_url, Role.API)
                )
            ) as (server, base_url),
            # Idle connections are dropped before uvicorn's 5 s keep-alive closes them, so no request
            # goes out on a socket the server is closing (a ReadError, not an answer).
            httpx.AsyncClient(base_url=base_url, timeout=30, limits=httpx.Limits(keepalive_expiry=2.0)) as http,
        ):
            workspaces = ("acme", "globex", "acme-corp", "acme.corp")
            api = Api(base_url, http, {ws: await make_key(database_url, ws) for ws in workspaces})
            created = Livestreams(Cluster(admin, namespace, [node]))
            try:
                yield Stack(api, admin, namespace, redis_client, database_url, simulator, created, server)
            finally:
                await asyncio.to_thread(created.delete_all)
    await redis_client.aclose()


@pytest.fixture(scope="module")
async def idle(stack: Stack) -> dict[str, Any]:
    """A live livestream of workspace acme whose room sends nothing: tests write its stream."""
    return await stack.live_livestream(f"idle_{uuid.uuid4().hex[:6]}")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


# -- connect and the whole data path -------------------------------------------------------------


async def test_a_connected_livestream_streams_the_rooms_events_over_sse_and_its_history_matches(stack: Stack) -> None:
    username = unique("sim")
    await stack.simulator.add_room(username, Scenario(seed=5, rate=100, total=150))
    auth = stack.api.auth("acme")

    response = await stack.connect("acme", username, wait_for_live=False)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    resource = stack.resource(body["name"])
    assert resource is not None
    assert resource["metadata"]["uid"] == body["id"]
    assert resource["spec"]["username"] == username
    assert resource["spec"]["workspaceId"] == "acme"
    assert resource["spec"]["state"] == "Running"

    async with subscribe(stack.api.http, body["id"], auth, last_event_id="0") as sse:
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        reading = asyncio.create_task(sse.collect())  # until the stream ends by itself
        room = stack.simulator.room(username)
        await wait_until(lambda: room.stats_json()["events_sent"] == 150, timeout=DEADLINE_S, what="150 events sent")
        assert await room.end_live()
        streamed = await asyncio.wait_for(reading, DEADLINE_S)

    expected = expected_events(room.sent_json()["messages"])
    events = [event for event in streamed if event.event not in MARKERS and event.event != "end"]
    assert {e.json()["id"]: e.event for e in events} == expected
    assert len(events) == len(expected)  # nothing twice
    assert (streamed[-2].event, streamed[-1].event, streamed[-1].json()) == (
        "tiktok.live_end",
        "end",
        {"reason": "live_end"},
    )
    streamed_ids = [e.id for e in streamed if e.id is not None]
    assert streamed_ids == (await stack.stream_ids(body["id"]))[: len(streamed_ids)]

    by_id = {e.json()["id"]: e.json() for e in streamed if e.id is not None}

    async def stored() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 37} | ({"cursor": cursor} if cursor else {})
            page = await stack.api.http.get(
                f"/api/livestreams/{body['id']}/events/history", params=params, headers=auth
            )
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return items

    async def all_stored() -> bool:
        return by_id.keys() <= {item["id"] for item in await stored()}

    await wait_until(all_stored, timeout=DEADLINE_S, what="every streamed event in the history")
    history = await stored()
    assert {item["id"]: item["event"] for item in history if item["id"] in by_id} == by_id
    assert {item["type"] for item in history if item["id"] not in by_id} <= MARKERS  # a marker after the end
    assert len(history) == len({item["id"] for item in history})
    moments = [dt.datetime.fromisoformat(item["timestamp"]) for item in history]
    assert moments == sorted(moments)


async def test_connecting_the_same_user_again_returns_the_existing_livestream(
    stack: Stack, idle: dict[str, Any]
) -> None:
    again = await stack.connect("acme", idle["username"].upper())

    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["id"] == idle["id"]


async def test_the_same_user_in_another_workspace_is_another_livestream(stack: Stack) -> None:
    username = unique("shared")
    await stack.simulator.add_room(username, Scenario(total=0))

    first = await stack.connect("acme", username)
    second = await stack.connect("globex", username)

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


async def test_connect_options_name_the_workspaces_own_secrets_and_reach_the_resource(stack: Stack) -> None:
    username = unique("options")
    options = {
        "room_id": "7300000000000000001",
        "proxy_secret": "acme--egress",
        "session_secret": "acme--account",
        "locale": {"language": "de", "region": "DE", "timezone": "Europe/Berlin"},
    }

    refused = await stack.connect("acme", username, **{**options, "session_secret": "globex--account"})
    connected = await stack.connect("acme", username, **options)

    assert refused.status_code == 403
    assert connected.status_code == 201, connected.text
    resource = stack.resource(connected.json()["name"])
    assert resource is not None
    assert resource["spec"]["connection"] == {
        "roomId": "7300000000000000001",
        "proxySecretRef": {"name": "acme--egress", "key": "proxies"},
        "sessionSecretRef": {"name": "acme--account"},
        "locale": {"language": "de", "region": "DE", "timezone": "Europe/Berlin"},
    }
    shown = connected.json()["connection"]
    assert (shown["proxy_secret"], shown["session_secret"], shown["room_id"]) == (
        "acme--egress",
        "acme--account",
        "7300000000000000001",
    )


async def test_connect_a_workspace_cannot_name_the_secrets_of_a_workspace_whose_id_extends_its_own(
    stack: Stack,
) -> None:
    username = unique("tenant")

    theirs = await stack.connect("acme", username, session_secret="acme-corp--session")
    old_style = await stack.connect("acme", username, session_secret="acme-corp-session")
    owner = await stack.connect("acme-corp", username, session_secret="acme-corp--session")

    assert (theirs.status_code, old_style.status_code) == (403, 403)
    assert "acme--" in theirs.json()["detail"]
    assert owner.status_code == 201, owner.text
    assert stack.resource(owner.json()["name"])["spec"]["connection"] == {  # type: ignore[index]
        "sessionSecretRef": {"name": "acme-corp--session"}
    }


async def test_connect_a_workspace_id_that_would_collide_with_another_owns_no_secrets(stack: Stack) -> None:
    """`acme.corp` would fold onto `acme-corp`: it may connect, but name no Secret at all."""
    username = unique("dotted")

    refused = [
        await stack.connect("acme.corp", username, session_secret=name)
        for name in ("acme-corp--session", "acme-corp-session")
    ]
    plain = await stack.connect("acme.corp", username)

    assert [response.status_code for response in refused] == [403, 403]
    assert "cannot reference Secrets" in refused[0].json()["detail"]
    assert plain.status_code == 201, plain.text


async def test_connecting_again_with_other_options_applies_them(stack: Stack) -> None:
    username = unique("reopts")
    first = await stack.connect(
        "acme", username, proxy_secret="acme--egress", proxy_secret_key="eu", locale={"language": "de"}
    )
    assert first.status_code == 201, first.text
    name = first.json()["name"]

    same = await stack.connect("acme", username, proxy_secret="acme--egress", proxy_secret_key="eu")
    bare = await stack.connect("acme", username)
    changed = await stack.connect(
        "acme", username, proxy_secret="acme--egress-us", session_secret="acme--account", room_id="42"
    )
    foreign = await stack.connect("acme", username, proxy_secret="globex--egress")

    assert [(r.status_code, r.json().get("reconfigured")) for r in (same, bare, changed)] == [
        (200, False),
        (200, False),
        (200, True),
    ]
    assert foreign.status_code == 403
    assert changed.json()["id"] == first.json()["id"]
    assert changed.json()["created"] is False
    resource = stack.resource(name)
    assert resource is not None
    assert resource["spec"]["connection"] == {
        "roomId": "42",
        "proxySecretRef": {"name": "acme--egress-us", "key": "proxies"},  # the old key does not stick
        "sessionSecretRef": {"name": "acme--account"},
        "locale": {"language": "de"},  # not in the request: kept
    }
    assert changed.json()["connection"] == {
        "room_id": "42",
        "proxy_secret": "acme--egress-us",
        "proxy_secret_key": "proxies",
        "session_secret": "acme--account",
        "locale": {"language": "de"},
    }

    modes = await stack.connect("acme", username, wait_for_live=True, event_types=["tiktok.gift"])
    kept = await stack.connect("acme", username, room_id="42")
    every_type = await stack.connect("acme", username, event_types=[])

    assert [(r.status_code, r.json()["reconfigured"]) for r in (modes, kept, every_type)] == [
        (200, True),
        (200, False),
        (200, True),
    ]
    assert (kept.json()["wait_for_live"], kept.json()["event_types"]) == (True, ["tiktok.gift"])
    resource = stack.resource(name)
    assert resource is not None
    assert (resource["spec"]["waitForLive"], "eventTypes" in resource["spec"]) == (True, False)
    assert resource["spec"]["connection"]["roomId"] == "42"


# -- SSE from the Redis stream -------------------------------------------------------------------


async def test_resuming_with_last_event_id_loses_and_repeats_nothing(stack: Stack, idle: dict[str, Any]) -> None:
    livestream_id, auth = idle["id"], stack.api.auth("acme")
    start = (await stack.stream_ids(livestream_id))[-1]
    await stack.publish(livestream_id, 60)

    async with subscribe(stack.api.http, livestream_id, auth, last_event_id=start) as sse:
        first = await sse.collect(25)
    async with subscribe(stack.api.http, livestream_id, {**auth, "Last-Event-ID": first[-1].id or ""}) as sse:
        reading = asyncio.create_task(sse.collect(35 + 40))
        await stack.publish(livestream_id, 40)  # while connected: live events follow the backlog
        second = await asyncio.wait_for(reading, DEADLINE_S)

    all_ids = await stack.stream_ids(livestream_id)
    assert [e.id for e in first + second] == all_ids[all_ids.index(start) + 1 :]


async def test_a_new_subscriber_gets_only_events_after_it_connected(stack: Stack, idle: dict[str, Any]) -> None:
    await stack.publish(idle["id"], 5)

    async with subscribe(stack.api.http, idle["id"], stack.api.auth("acme")) as sse:
        await sse.opened()
        published = await stack.publish(idle["id"], 3)
        got = await sse.collect(3)

    assert [e.id for e in got] == published


async def test_a_type_filter_sends_only_those_types(stack: Stack, idle: dict[str, Any]) -> None:
    livestream_id = idle["id"]
    start = (await stack.stream_ids(livestream_id))[-1]
    await stack.publish(livestream_id, 5, EventType.COMMENT)
    gifts = await stack.publish(livestream_id, 3, EventType.GIFT)
    await stack.publish(livestream_id, 5, EventType.LIKE)

    async with subscribe(
        stack.api.http, livestream_id, stack.api.auth("acme"), last_event_id=start, types="tiktok.gift"
    ) as sse:
        got = await sse.collect(3)

    assert [e.id for e in got] == gifts
    assert {e.event for e in got} == {"tiktok.gift"}


async def test_a_live_end_event_ends_the_stream(stack: Stack, idle: dict[str, Any]) -> None:
    livestream_id = idle["id"]
    start = (await stack.stream_ids(livestream_id))[-1]
    ids = await stack.publish(livestream_id, 2) + await stack.publish(livestream_id, 1, EventType.LIVE_END)

    async with subscribe(stack.api.http, livestream_id, stack.api.auth("acme"), last_event_id=start) as sse:
        got = await sse.collect()  # returns only because the server ended the stream

    assert [e.id for e in got] == [*ids, None]
    assert (got[-1].event, got[-1].json()) == ("end", {"reason": "live_end"})


async def test_an_idle_stream_gets_keepalive_comments(stack: Stack, idle: dict[str, Any]) -> None:
    async with subscribe(stack.api.http, idle["id"], stack.api.auth("acme")) as sse:
        await sse.opened()
        async with asyncio.timeout(DEADLINE_S):
            first = await anext(sse.lines)

    assert first == ": ping"


async def test_a_client_that_stops_reading_costs_the_server_one_chunk_not_a_backlog(
    stack: Stack, idle: dict[str, Any]
) -> None:
    host, port = stack.api.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small TCP window
    sock.connect((host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    writer.write(
        f"GET /api/livestreams/{idle['id']}/events HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {stack.api.tokens['acme']}\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    try:
        writer.transport.pause_reading()  # from now on this client reads nothing
        pipe = stack.redis.pipeline(transaction=False)
        event = json.dumps({"padding": "x" * 1000})
        for i in range(20_000):  # ~20 MB of SSE, far more than the socket buffers hold
            pipe.xadd(naming.livestream_stream(idle["id"]), {"type": "tiktok.like", "id": f"slow{i}", "event": event})
        await pipe.execute()
        connections = stack.server.server_state.connections

        def buffered() -> int:
            return max(connection.transport.get_write_buffer_size() for connection in connections)

        await wait_until(
            lambda: any(connection.flow.write_paused for connection in connections),
            timeout=DEADLINE_S,
            what="the server to wait on the slow client (its socket and write buffer full)",
        )

        assert buffered() <= 512 * 1024  # one chunk (sse_batch entries) and the transport's high-water mark
    finally:
        writer.close()


# -- disconnect and delete -------------------------------------------------------------------------


async def test_disconnecting_stops_the_livestream_ends_its_streams_and_keeps_it(stack: Stack) -> None:
    live = await stack.live_livestream(unique("bye"))
    auth = stack.api.auth("acme")

    async with subscribe(stack.api.http, live["id"], auth) as sse:
        await sse.opened()
        reading = asyncio.create_task(sse.collect())
        response = await stack.api.http.post(f"/api/livestreams/{live['id']}/disconnect", headers=auth)
        streamed = await asyncio.wait_for(reading, DEADLINE_S)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Stopped"
    assert (streamed[-1].event, streamed[-1].json()) == ("end", {"reason": "stopped"})
    resource = stack.resource(live["name"])
    assert resource is not None and resource["spec"]["state"] == "Stopped"
    await wait_until(lambda: stack.phase(live["name"]) == "Stopped", timeout=DEADLINE_S, what="phase Stopped")
    shown = await stack.api.http.get(f"/api/livestreams/{live['id']}", headers=auth)
    assert shown.json()["phase"] == "Stopped"
    active = await stack.api.http.get("/api/livestreams", headers=auth)
    assert live["id"] not in {item["id"] for item in active.json()["items"]}
    stopped = await stack.api.http.get("/api/livestreams", params={"phase": "Stopped"}, headers=auth)
    assert live["id"] in {item["id"] for item in stopped.json()["items"]}


async def test_connecting_a_disconnected_user_again_resumes_the_same_livestream(stack: Stack) -> None:
    live = await stack.live_livestream(unique("again"))
    await stack.api.http.post(f"/api/livestreams/{live['id']}/disconnect", headers=stack.api.auth("acme"))

    again = await stack.connect("acme", live["username"])

    assert again.status_code == 200
    assert (again.json()["id"], again.json()["created"], again.json()["resumed"]) == (live["id"], False, True)
    await wait_until(lambda: stack.phase(live["name"]) == "Live", timeout=DEADLINE_S, what="live again")


async def test_deleting_removes_the_livestream_but_not_its_history(stack: Stack) -> None:
    live = await stack.live_livestream(unique("del"))
    auth = stack.api.auth("acme")

    response = await stack.api.http.delete(f"/api/livestreams/{live['id']}", headers=auth)

    assert response.status_code == 204
    await wait_until(lambda: stack.resource(live["name"]) is None, timeout=DEADLINE_S, what="the resource gone")
    assert (await stack.api.http.get(f"/api/livestreams/{live['id']}", headers=auth)).status_code == 404
    history = await stack.api.http.get(f"/api/livestreams/{live['id']}/events/history", headers=auth)
    assert history.status_code == 200
    assert (await stack.api.http.delete(f"/api/livestreams/{live['id']}", headers=auth)).status_code == 404


# -- listing ----------------------------------------------------------------------------------------


async def test_the_list_shows_the_workspaces_livestreams_with_their_status_and_pages(
    stack: Stack, idle: dict[str, Any]
) -> None:
    auth = stack.api.auth("acme")

    by_user = await stack.api.http.get("/api/livestreams", params={"username": idle["username"]}, headers=auth)
    ids: list[str] = []
    cursor = None
    while True:
        page = await stack.api.http.get(
            "/api/livestreams", params={"limit": 1} | ({"cursor": cursor} if cursor else {}), headers=auth
        )
        assert page.status_code == 200
        ids += [item["id"] for item in page.json()["items"]]
        if (cursor := page.json()["next_cursor"]) is None:
            break

    (item,) = by_user.json()["items"]
    assert (item["id"], item["phase"], item["workspace_id"]) == (idle["id"], "Live", "acme")
    assert item["room_id"] is not None
    assert idle["id"] in ids
    assert len(ids) == len(set(ids))


# -- workspaces and keys ----------------------------------------------------------------------------


async def test_another_workspaces_livestream_is_not_found_anywhere(stack: Stack, idle: dict[str, Any]) -> None:
    other = stack.api.auth("globex")
    base = f"/api/livestreams/{idle['id']}"
    http = stack.api.http

    answers = [
        await http.get(base, headers=other),
        await http.get(f"{base}/events", headers=other),
        await http.get(f"{base}/events/history", headers=other),
        await http.post(f"{base}/disconnect", headers=other),
        await http.delete(base, headers=other),
    ]
    listed = await http.get("/api/livestreams", params={"phase": list(model.Phase)}, headers=other)

    assert [a.status_code for a in answers] == [404] * 5
    assert len({a.json()["detail"] for a in answers}) == 1  # the same words as for an id that never existed
    assert idle["id"] not in {item["id"] for item in listed.json()["items"]}
    resource = stack.resource(idle["name"])
    assert resource is not None and resource["spec"]["state"] == "Running"


async def test_a_request_without_a_valid_key_is_refused(stack: Stack, idle: dict[str, Any]) -> None:
    new = keys.generate()
    conn = await asyncpg.connect(stack.database_url)
    try:
        key = await repository.insert_key(conn, workspace_id="acme", name="x", key_hash=new.digest, key_prefix="x")
        await repository.revoke_key(conn, key.id)
    finally:
        await conn.close()
    url = f"/api/livestreams/{idle['id']}"

    answers = [
        await stack.api.http.get(url),
        await stack.api.http.get(url, headers={"Authorization": "Bearer nope"}),
        await stack.api.http.get(url, headers={"Authorization": f"Bearer {keys.generate().secret}"}),
        await stack.api.http.get(url, headers={"Authorization": f"Bearer {new.secret}"}),  # revoked
        await stack.api.http.get(url, headers={"Authorization": f"Basic {stack.api.tokens['acme']}"}),
    ]

    assert [a.status_code for a in answers] == [401] * 5
    assert all(a.headers["www-authenticate"] == "Bearer" for a in answers)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "reason"),
    [
        ("POST", "/api/livestreams/connect", {"json": {"username": "a"}}, 422, "username"),
        ("POST", "/api/livestreams/connect", {"json": {"username": "bad name!"}}, 422, "username"),
        ("POST", "/api/livestreams/connect", {"json": {"username": "ok_user", "extra": 1}}, 422, "extra"),
        (
            "POST",
            "/api/livestreams/connect",
            {"json": {"username": "ok_user", "event_types": ["x"]}},
            422,
            "event_types",
        ),
        ("POST", "/api/livestreams/connect", {"json": {"username": "ok_user", "workspace_id": "globex"}}, 403, "acme"),
        (
            "POST",
            "/api/livestreams/connect",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            422,
            "",
        ),
        ("GET", "/api/livestreams/not-a-uuid", {}, 422, "livestream_id"),
        ("GET", "/api/livestreams", {"params": {"limit": 0}}, 422, "limit"),
        ("GET", "/api/livestreams", {"params": {"phase": "Sleeping"}}, 422, "phase"),
        ("GET", "/api/livestreams", {"params": {"cursor": "bogus"}}, 422, "cursor"),
        ("GET", "/api/livestreams/{id}/events", {"params": {"last_event_id": "$"}}, 422, "last_event_id"),
        ("GET", "/api/livestreams/{id}/events", {"headers": {"Last-Event-ID": "1-2-3"}}, 422, "Last-Event-ID"),
        ("GET", "/api/livestreams/{id}/events", {"params": {"types": "tiktok.nothing"}}, 422, "types"),
        ("GET", "/api/livestreams/{id}/events/history", {"params": {"cursor": "x_y"}}, 422, "cursor"),
        ("GET", "/api/livestreams/{id}/events/history", {"params": {"since": "yesterday"}}, 422, "since"),
    ],
)
async def test_invalid_input_is_refused_with_a_reason(
    stack: Stack, idle: dict[str, Any], method: str, path: str, kwargs: dict[str, Any], status: int, reason: str
) -> None:
    request = dict(kwargs)  # a copy: the same parameters serve the run on each kind of node
    headers = {**stack.api.auth("acme"), **request.pop("headers", {})}

    response = await stack.api.http.request(method, path.format(id=idle["id"]), headers=headers, **request)

    assert response.status_code == status, response.text
    assert reason in response.text


# -- operations ---------------------------------------------------------------------------------------


async def test_readiness_checks_postgresql_redis_and_kubernetes_and_metrics_are_served(stack: Stack) -> None:
    ready = await stack.api.http.get("/readyz")
    metrics = await stack.api.http.get("/metrics")

    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"postgresql": "ok", "redis": "ok", "kubernetes": "ok"},
        "reason": None,
    }
    assert "tiktok_api_requests_total" in metrics.text
    assert 'route="/api/livestreams/{livestream_id}"' in metrics.text


def test_the_apis_token_may_manage_livestreams_and_nothing_else(control_plane: ControlPlane, stack: Stack) -> None:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_for(API_USER))) as api:
        custom = client.CustomObjectsApi(api)
        custom.list_namespaced_custom_object(model.GROUP, model.VERSION, stack.namespace, model.PLURAL)
        forbidden = [
            lambda: client.CoreV1Api(api).list_namespaced_pod(stack.namespace),
            lambda: client.CoreV1Api(api).list_namespaced_secret(stack.namespace),
            lambda: custom.list_namespaced_custom_object(model.GROUP, model.VERSION, "default", model.PLURAL),
            lambda: custom.patch_namespaced_custom_object_status(
                model.GROUP, model.VERSION, stack.namespace, model.PLURAL, "x", {"status": {}}
            ),
        ]
        for call in forbidden:
            with pytest.raises(ApiException) as refused:
                call()
            assert refused.value.status == 403


async def test_shutdown_ends_open_streams_at_once(
    control_plane: ControlPlane, stack: Stack, backing: tuple[str, str], idle: dict[str, Any]
) -> None:
    redis_url, _ = backing
    settings = api_settings(control_plane, stack.namespace, redis_url, stack.database_url)
    settings = settings.model_copy(update={"sse_block_ms": 5_000, "sse_ping_interval_s": 60.0})
    async with (
        running_api(settings) as (server, base_url),
        httpx.AsyncClient(base_url=base_url) as http,
        subscribe(http, idle["id"], stack.api.auth("acme")) as sse,
    ):
        await sse.opened()
        reading = asyncio.create_task(sse.collect())
        server.should_exit = True
        streamed = await asyncio.wait_for(reading, 5.0)  # not the 60 s ping, nor the 10 s graceful limit

    assert streamed == []  # a shutdown is not an end (no `end` event): clients reconnect


# -- fuzzing ------------------------------------------------------------------------------------------


def fuzz(openapi: dict[str, Any], base_url: str, token: str, *, examples: int) -> dict[str, list[str]]:
    """Valid and invalid requests generated from the OpenAPI document; what answered 5xx (or failed)."""
    schema = schemathesis.openapi.from_dict(openapi)
    problems: dict[str, list[str]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            found = fuzz_operation(operation, mode, base_url, {"Authorization": f"Bearer {token}"}, examples)
            if found:
                problems.setdefault(operation.label, []).extend(found)
    return problems


def fuzz_operation(
    operation: Any, mode: GenerationMode, base_url: str, auth: dict[str, str], examples: int
) -> list[str]:
    problems: list[str] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base_url, headers=auth, timeout=10)
        except Exception as exc:  # a reset connection is a failure too
            problems.append(f"{case.as_curl_command()}: {exc!r}")
            return
        if response.status_code >= 500:
            problems.append(f"{response.status_code} {case.as_curl_command()}: {response.text[:200]}")

    try:
        call()
    except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (an operation without inputs)
        assert mode is GenerationMode.NEGATIVE
    return problems


async def test_requests_generated_from_the_openapi_document_never_get_a_server_error(
    control_plane: ControlPlane, stack: Stack, admin: client.ApiClient, backing: tuple[str, str], node_kind: str
) -> None:
    if node_kind == "kubelet":  # ~25 s that would check the same thing again
        pytest.skip("no pod takes part (a namespace without an operator): run once, with the node agent")
    # Its own namespace, where no operator runs: fuzzed connects create resources and nothing else.
    namespace = create_namespace(admin, "fuzz")
    bind_role(admin, namespace=namespace, user=API_USER, manifest="api-rbac.yaml")
    token = await make_key(stack.database_url, "fuzz")
    settings = api_settings(control_plane, namespace, backing[0], stack.database_url)
    async with running_api(settings) as (_, base_url), httpx.AsyncClient(base_url=base_url) as http:
        openapi = (await http.get("/openapi.json")).json()
        problems = await asyncio.to_thread(fuzz, openapi, base_url, token, examples=60)
        listed = await http.get("/api/livestreams", headers={"Authorization": f"Bearer {token}"})

    assert problems == {}
    assert listed.json()["items"], "no generated connect was accepted: the fuzzing never got past validation"
