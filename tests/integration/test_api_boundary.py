"""The API's tenant boundary on real parts: control plane (the API's own Role), Redis, PostgreSQL.

Quotas, rate limits, revoked keys, the Redis pool and what an error answer may say. No
operator runs here: a Livestream the API creates stays without status, which is all these
tests need (a stream of it reads its Redis stream; tests write events there as a connector
would). Each test runs its own API (in-process uvicorn) with the limits it exercises.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.access_support import database_as, redis_as
from tests.cluster_support import started_control_plane
from tests.integration.test_api_stack import (
    API_USER,
    Subscription,
    bind_role,
    create_database,
    create_namespace,
    running_api,
)
from tests.support import wait_until
from tiktok_service.api import keys, main, quotas, repository
from tiktok_service.database import migrate
from tiktok_service.domain import naming
from tiktok_service.domain.access import Role
from tiktok_service.domain.events import Envelope, EventType
from tiktok_service.operator import model
from tiktok_service.settings import ApiSettings
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.postgres_server import LocalPostgres

pytestmark = pytest.mark.slow

STRANGER = "stranger"  # a user of the API server with no rights at all
DEADLINE_S = 30.0
UPSTREAM_WORDS = ("forbidden", "User ", "Error ", "refused", "6379", "5432", "asyncpg", "redis.", "etcd")


# -- the parts ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(extra_users=[API_USER, STRANGER], wait_for_controllers=False) as cp:
        yield cp


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as admin:
        name = create_namespace(admin, "bound")
        bind_role(admin, namespace=name, user=API_USER, manifest="api-rbac.yaml")
        _wait_for_rights(control_plane, name)
        yield name


def _wait_for_rights(cp: ControlPlane, namespace: str) -> None:
    """Until the API server's authorizer has taken the new binding in (it is not at once)."""
    with config.new_client_from_config(config_file=str(cp.kubeconfig_for(API_USER))) as as_api:
        objects = client.CustomObjectsApi(as_api)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                objects.list_namespaced_custom_object(model.GROUP, model.VERSION, namespace, model.PLURAL, limit=1)
                return
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture(scope="module")
async def database_url(postgres_server: LocalPostgres) -> str:
    if not postgres_server.running:
        postgres_server.start()
    return await create_database(postgres_server.dsn)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.from_url(redis_url)
    yield connection
    await connection.aclose()


def settings(cp: ControlPlane, namespace: str, redis_url: str, database_url: str, **overrides: Any) -> ApiSettings:
    return ApiSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": 0,
            # The API's own Redis user and database login (README, "Credentials and least privilege").
            "redis_url": redis_as(redis_url, Role.API),
            "database_url": database_as(database_url, Role.API),
            "kubeconfig": cp.kubeconfig_for(API_USER),
            "namespace": namespace,
            "sse_block_ms": 200,
            "sse_phase_check_s": 0.3,
            "sse_ping_interval_s": 1.0,
            "key_recheck_s": 0.5,
            "shutdown_timeout_s": 10,
            **overrides,
        }
    )


@contextlib.asynccontextmanager
async def api(api_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_api(api_settings) as (_, base_url),
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=httpx.Limits(keepalive_expiry=2.0)) as http,
    ):
        yield http


async def new_key(database_url: str, workspace: str) -> tuple[uuid.UUID, dict[str, str]]:
    """A key of `workspace`: its id (to revoke it) and the request headers that carry it."""
    new = keys.generate()
    conn = await asyncpg.connect(database_url)
    try:
        made = await repository.insert_key(
            conn, workspace_id=workspace, name="test", key_hash=new.digest, key_prefix=new.shown
        )
    finally:
        await conn.close()
    return made.id, {"Authorization": f"Bearer {new.secret}"}


def workspace() -> str:
    return f"ws-{uuid.uuid4().hex[:8]}"


async def connect(http: httpx.AsyncClient, headers: dict[str, str], username: str | None = None) -> httpx.Response:
    body = {"username": username or f"u_{uuid.uuid4().hex[:8]}"}
    return await http.post("/api/livestreams/connect", json=body, headers=headers)


async def publish(redis: aioredis.Redis, livestream_id: str, event_type: EventType = EventType.COMMENT) -> str:
    envelope = Envelope(
        id=str(uuid.uuid4().int >> 64),
        type=event_type,
        livestream_id=livestream_id,
        room_id=1,
        time_ms=1_700_000_000_000,
        data={"user": None, "text": "hi"},
    )
    fields = {"type": envelope.type.value, "id": envelope.id, "event": envelope.encode()}
    return (await redis.xadd(naming.livestream_stream(livestream_id), fields)).decode()


@contextlib.asynccontextmanager
async def opened_stream(
    http: httpx.AsyncClient, livestream_id: str, headers: dict[str, str]
) -> AsyncIterator[Subscription]:
    async with http.stream("GET", f"/api/livestreams/{livestream_id}/events", headers=headers) as response:
        subscription = Subscription(response)
        await subscription.opened()
        yield subscription


async def refused_stream(http: httpx.AsyncClient, livestream_id: str, headers: dict[str, str]) -> httpx.Response:
    async with http.stream("GET", f"/api/livestreams/{livestream_id}/events", headers=headers) as response:
        await response.aread()
        assert response.status_code != 200, "the stream was not refused"
        return response


def apiserver_requests(cp: ControlPlane) -> Counter[str]:
    """The API server's own count of requests on livestreams so far, by verb (from its /metrics)."""
    context = ssl.create_default_context(cafile=str(cp.ca_cert_path))
    request = urllib.request.Request(f"{cp.server_url}/metrics", headers={"Authorization": f"Bearer {cp.admin_token}"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="livestreams"' in line:
            verb = line.split('verb="', 1)[1].split('"', 1)[0]
            counts[verb] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def assert_our_words(response: httpx.Response, reason: str) -> None:
    body = response.json()
    assert body["reason"] == reason, body
    assert not any(word in response.text for word in UPSTREAM_WORDS), response.text


# -- rate limits and quotas ---------------------------------------------------------------------


async def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_other_keys_do_not(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    ws = workspace()
    _, flooding = await new_key(database_url, ws)
    _, calm = await new_key(database_url, ws)
    async with api(settings(control_plane, namespace, redis_url, database_url, rate_limit="5/minute")) as http:
        answers = [(await http.get("/api/livestreams", headers=flooding)) for _ in range(8)]
        other = await http.get("/api/livestreams", headers=calm)

    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    refused = answers[-1]
    assert_our_words(refused, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 200


async def test_a_workspace_at_its_livestream_quota_is_refused_until_it_disconnects_one(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    _, headers = await new_key(database_url, workspace())
    async with api(
        settings(control_plane, namespace, redis_url, database_url, max_livestreams_per_workspace=2)
    ) as http:
        first, second = await connect(http, headers, "alpha_1"), await connect(http, headers, "bravo_1")
        third = await connect(http, headers, "charlie_1")
        again = await connect(http, headers, "alpha_1")  # already active: needs no new place
        stopped = await http.post(f"/api/livestreams/{second.json()['id']}/disconnect", headers=headers)
        after_disconnect = await connect(http, headers, "charlie_1")
        resume = await connect(http, headers, "bravo_1")  # resuming needs a place again

    assert (first.status_code, second.status_code) == (201, 201)
    assert third.status_code == 403
    assert_our_words(third, "livestream_quota")
    assert "quota is 2" in third.json()["detail"]
    assert again.status_code == 200
    assert stopped.status_code == 200
    assert after_disconnect.status_code == 201
    assert resume.status_code == 403


async def test_concurrent_connects_on_two_replicas_never_both_take_the_last_place(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    _, headers = await new_key(database_url, workspace())
    quota = settings(control_plane, namespace, redis_url, database_url, max_livestreams_per_workspace=1)
    async with api(quota) as http, api(quota) as replica:
        answers = await asyncio.gather(*(connect(each, headers) for each in [http, replica] * 3))

    assert sorted(a.status_code for a in answers) == [201, 403, 403, 403, 403, 403]


async def test_a_connect_waits_for_the_workspaces_connect_lock_and_gives_up_with_409(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str, redis_client: aioredis.Redis
) -> None:
    ws = workspace()
    _, headers = await new_key(database_url, ws)
    held = redis_client.lock(quotas.connect_lock_key(ws), timeout=60, thread_local=False)
    assert await held.acquire(blocking=False)  # another replica is between its count and its create
    try:
        async with api(settings(control_plane, namespace, redis_url, database_url)) as http:
            waited = await connect(http, headers)
    finally:
        await held.release()

    assert waited.status_code == 409
    assert_our_words(waited, "conflict")
    assert waited.headers["Retry-After"] == "1"


async def test_open_streams_are_capped_per_key_and_per_workspace_and_a_closed_one_frees_its_place(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    ws = workspace()
    _, key_a = await new_key(database_url, ws)
    _, key_b = await new_key(database_url, ws)
    limits = {"max_streams_per_key": 2, "max_streams_per_workspace": 3}
    async with api(settings(control_plane, namespace, redis_url, database_url, **limits)) as http:
        livestream_id = (await connect(http, key_a)).json()["id"]
        async with contextlib.AsyncExitStack() as streams:
            first = await streams.enter_async_context(opened_stream(http, livestream_id, key_a))
            await streams.enter_async_context(opened_stream(http, livestream_id, key_a))
            key_full = await refused_stream(http, livestream_id, key_a)
            await streams.enter_async_context(opened_stream(http, livestream_id, key_b))
            workspace_full = await refused_stream(http, livestream_id, key_b)
            await first.response.aclose()

            async def reopened() -> bool:
                async with http.stream("GET", f"/api/livestreams/{livestream_id}/events", headers=key_a) as response:
                    return response.status_code == 200

            await wait_until(reopened, timeout=DEADLINE_S, what="a closed stream's place to be free again")

    assert key_full.status_code == 429
    assert_our_words(key_full, "stream_quota")
    assert "API key has 2" in key_full.json()["detail"]
    assert int(key_full.headers["Retry-After"]) >= 1
    assert workspace_full.status_code == 429
    assert "workspace has 3" in workspace_full.json()["detail"]


# -- revoked keys -------------------------------------------------------------------------------


async def test_revoking_a_key_ends_its_open_streams_within_seconds(
    control_plane: ControlPlane,
    namespace: str,
    redis_url: str,
    database_url: str,
    redis_client: aioredis.Redis,
) -> None:
    ws = workspace()
    key_id, headers = await new_key(database_url, ws)
    _, other = await new_key(database_url, ws)
    async with api(settings(control_plane, namespace, redis_url, database_url, key_recheck_s=1.0)) as http:
        livestream_id = (await connect(http, headers)).json()["id"]
        async with (
            opened_stream(http, livestream_id, headers) as revoked,
            opened_stream(http, livestream_id, other) as kept,
        ):
            sent = await publish(redis_client, livestream_id)
            assert [e.id for e in await revoked.collect(1)] == [sent]

            revoke = ["--database-url", database_url, "revoke", str(key_id)]
            assert await asyncio.to_thread(main.keys_main, revoke) == 0
            revoked_at = time.monotonic()
            rest = await revoked.collect(timeout=DEADLINE_S)  # until the server ends the stream
            took = time.monotonic() - revoked_at

            after = await publish(redis_client, livestream_id)
            assert [e.id for e in await kept.collect(2)] == [sent, after]  # another key's stream goes on
        refused = await http.get(f"/api/livestreams/{livestream_id}", headers=headers)

    assert [(e.event, e.json()) for e in rest] == [("end", {"reason": "revoked"})]
    assert refused.status_code == 401
    print(f"\nrevoked key's stream ended {took:.2f} s after the revocation (key_recheck_s=1.0)")


# -- unknown ids --------------------------------------------------------------------------------


async def test_unknown_ids_cost_no_request_to_the_kubernetes_api_and_new_ones_are_found_on_every_replica(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    _, headers = await new_key(database_url, workspace())
    # 31 requests of one key: the default 30/second would refuse the last when they are quick.
    api_settings = settings(control_plane, namespace, redis_url, database_url, rate_limit="1000/second")
    async with api(api_settings) as http, api(api_settings) as replica:
        before = apiserver_requests(control_plane)
        for _ in range(10):
            unknown = uuid.uuid4()
            for path in (f"/api/livestreams/{unknown}", f"/api/livestreams/{unknown}/events/history"):
                assert (await http.get(path, headers=headers)).status_code == 404
            async with http.stream("GET", f"/api/livestreams/{unknown}/events", headers=headers) as response:
                assert response.status_code == 404
        spent = apiserver_requests(control_plane) - before

        # No operator runs: there is no livestreams row, yet the other replica finds it by one GET.
        created = (await connect(http, headers)).json()
        before = apiserver_requests(control_plane)
        found = await replica.get(f"/api/livestreams/{created['id']}", headers=headers)
        spent_finding = apiserver_requests(control_plane) - before

    assert spent == Counter(), f"unknown ids made requests to the API server: {dict(spent)}"
    assert found.status_code == 200 and found.json()["name"] == created["name"]
    assert spent_finding == Counter({"GET": 1})


# -- the Redis pool -----------------------------------------------------------------------------


async def test_more_livestreams_streamed_than_the_pool_holds_refuses_one_stream_not_readiness(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str, redis_client: aioredis.Redis
) -> None:
    _, headers = await new_key(database_url, workspace())
    # Readers block for 5 s: each holds its pool connection nearly all the time.
    small = settings(control_plane, namespace, redis_url, database_url, redis_pool_size=6, sse_block_ms=5_000)
    cap = small.sse_reader_cap
    async with api(small) as http:
        ids = [(await connect(http, headers)).json()["id"] for _ in range(cap + 2)]
        async with contextlib.AsyncExitStack() as streams:
            opened = [await streams.enter_async_context(opened_stream(http, i, headers)) for i in ids[:cap]]
            beyond = await refused_stream(http, ids[cap], headers)
            ready = await http.get("/readyz")
            # Another subscriber of a livestream being read needs no connection of its own.
            extra = await streams.enter_async_context(opened_stream(http, ids[0], headers))
            sent = await publish(redis_client, ids[0])
            assert [e.id for e in await extra.collect(1)] == [sent]
            assert [e.id for e in await opened[0].collect(1)] == [sent]
        await wait_until(
            lambda: _streamable(http, ids[cap], headers), timeout=DEADLINE_S, what="a freed reader to be reusable"
        )

    assert beyond.status_code == 503
    assert_our_words(beyond, "stream_capacity")
    assert int(beyond.headers["Retry-After"]) >= 1
    assert ready.status_code == 200, ready.text
    print(f"\n{cap} livestreams streamed on a pool of {small.redis_pool_size}: the next refused, /readyz 200")


async def _streamable(http: httpx.AsyncClient, livestream_id: str, headers: dict[str, str]) -> bool:
    async with http.stream("GET", f"/api/livestreams/{livestream_id}/events", headers=headers) as response:
        return response.status_code == 200


# -- docs and error answers ---------------------------------------------------------------------


async def test_the_openapi_document_and_docs_are_served_only_when_the_setting_says_so(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    paths = ("/docs", "/redoc", "/openapi.json")
    async with api(settings(control_plane, namespace, redis_url, database_url)) as http:
        hidden = [(await http.get(path)).status_code for path in paths]
    async with api(settings(control_plane, namespace, redis_url, database_url, docs=True)) as http:
        shown = [(await http.get(path)).status_code for path in paths]

    assert hidden == [404, 404, 404]
    assert shown == [200, 200, 200]


async def test_a_kubernetes_refusal_is_answered_in_our_words_not_the_api_servers(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    _, headers = await new_key(database_url, workspace())
    unbound = settings(
        control_plane, namespace, redis_url, database_url, kubeconfig=control_plane.kubeconfig_for(STRANGER)
    )
    async with api(unbound) as http:
        refused = await connect(http, headers)
        ready = await http.get("/readyz")

    assert refused.status_code == 503
    assert_our_words(refused, "kubernetes_unavailable")
    assert ready.status_code == 503
    assert ready.json()["checks"]["kubernetes"] == "unavailable"


async def test_readiness_fails_until_the_database_is_migrated(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str, postgres_server: LocalPostgres
) -> None:
    """A database the owner has not migrated yet: 503 with the reason, then ready once `migrate` has run."""
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute('DROP DATABASE IF EXISTS "api_unmigrated"')
        await admin.execute('CREATE DATABASE "api_unmigrated"')
    finally:
        await admin.close()
    fresh = postgres_server.dsn.rsplit("/", 1)[0] + "/api_unmigrated"
    async with api(settings(control_plane, namespace, redis_url, fresh)) as http:
        before = await http.get("/readyz")
        await migrate.migrate(fresh)  # by the owner, as `tiktok-service migrate` does
        after = await http.get("/readyz")

    assert before.status_code == 503, before.text
    assert before.json()["reason"] == "database_schema_outdated"
    assert before.json()["checks"] == {"postgresql": "schema_outdated", "redis": "ok", "kubernetes": "ok"}
    assert after.status_code == 200, after.text
    assert after.json()["reason"] is None


async def test_unreachable_redis_and_postgresql_are_answered_in_our_words(
    control_plane: ControlPlane, namespace: str, redis_url: str, database_url: str
) -> None:
    _, headers = await new_key(database_url, workspace())
    closed = _closed_port()
    no_redis = settings(control_plane, namespace, f"redis://127.0.0.1:{closed}/0", database_url)
    async with api(no_redis) as http:
        unknown = await http.get(f"/api/livestreams/{uuid.uuid4()}", headers=headers)  # the id lookup needs Redis
        ready = await http.get("/readyz")
    no_database = settings(
        control_plane, namespace, redis_url, database_url.rsplit("@", 1)[0] + f"@127.0.0.1:{closed}/x"
    )
    async with api(no_database) as http:
        listed = await http.get("/api/livestreams", headers=headers)

    assert unknown.status_code == 503
    assert_our_words(unknown, "redis_unavailable")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "unavailable"
    assert listed.status_code == 503
    assert_our_words(listed, "unavailable")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
