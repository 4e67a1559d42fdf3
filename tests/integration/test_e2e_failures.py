"""Failures told apart, end to end: each TikTok refusal ends in its own exit code, phase, reason and action.

A real control plane, a node running connector pods (every scenario runs twice: on the node
agent, pods as real `tiktok-service connector` processes, and on a real kubelet with
containerd, pods from the product image), the operator, Redis and the simulator playing
TikTok's refusals (captcha pages, a blocked handshake, an age-restricted room, a spent sign
quota, the sign server's close codes, a socket closed cleanly again and again). Each test
creates a Livestream and waits for what a user would see in its status: the README's failure
table, row by row.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster_support import started_control_plane
from tests.e2e_support import (
    NODE_KINDS,
    Cluster,
    Livestreams,
    Node,
    Services,
    connector_bin_dir,
    connector_image_settings,
    exit_of,
    node_kind_or_skip,
    pods_host,
    pods_redis,
    prepared_namespace,
    started_node,
    started_services,
    unique,
    wait_for,
)
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service.operator import model
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.postgres_server import LocalPostgres
from tiktok_service_dev.redis_server import LocalRedis
from tiktok_service_dev.simulator.scenario import Scenario

pytestmark = pytest.mark.slow

OPERATOR_USER = "operator"
NODE = "e2e-failures"
VENV_BIN = Path(sys.executable).parent
QUICK_POLICY = {"maxRestarts": 1, "backoffBaseSeconds": 1, "backoffCapSeconds": 2}


@pytest.fixture(scope="module", params=NODE_KINDS)
def node_kind(request: pytest.FixtureRequest) -> str:
    """Every scenario runs on the local node agent (pods as processes) and on a real kubelet."""
    return node_kind_or_skip(request.param)


@pytest.fixture(scope="module")
def control_plane(node_kind: str) -> Iterator[ControlPlane]:
    """A fresh one per node kind: nothing of one run (nodes, pods, events) is seen by the other."""
    with started_control_plane(extra_users=[OPERATOR_USER]) as cp:
        yield cp


@pytest.fixture(scope="module")
def node(node_kind: str, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    bin_dir = connector_bin_dir(tmp_path_factory.mktemp("connector-bin"), VENV_BIN)
    with started_node(node_kind, control_plane, NODE, bin_dir=bin_dir, work_dir=tmp_path_factory.mktemp(NODE)) as n:
        yield n


@pytest.fixture(scope="module")
def services(node: Node, redis_server: LocalRedis, postgres_server: LocalPostgres) -> Iterator[Services]:
    """Redis, the simulator (where the node's pods reach them), a database and the persister."""
    if not postgres_server.running:
        postgres_server.start()
    with (
        pods_redis(node, redis_server) as server,
        started_services(redis_url=server.url, postgres_dsn=postgres_server.dsn, host=pods_host(node)) as started,
    ):
        yield started


@pytest.fixture(scope="module")
def namespace(admin: client.ApiClient, services: Services) -> str:
    return prepared_namespace(admin, prefix="e2e-fail", operator_user=OPERATOR_USER, redis_url=services.redis_url)


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane, admin: client.ApiClient, namespace: str, services: Services, node: Node
) -> Iterator[Cluster]:
    base_url = services.simulator.base_url
    settings = operator_harness.quick_settings(
        kubeconfig=control_plane.kubeconfig_for(OPERATOR_USER),
        namespace=namespace,
        redis_url=services.redis_url,
        database_url=None,
        sign_api_url=base_url,
        tiktok_app_url=base_url,
        tiktok_webcast_url=base_url + "/webcast",
        **connector_image_settings(node),
    )
    operator = operator_harness.OperatorThread(settings).start()
    try:
        yield Cluster(admin, namespace, [node])
    finally:
        operator.stop()


@pytest.fixture
def livestreams(cluster: Cluster) -> Iterator[Livestreams]:
    created = Livestreams(cluster)
    yield created
    created.delete_all()


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
    return wait_for(
        partial(cluster.in_phase, name, phase, **fields),
        what=f"{name} to be {phase} {fields or ''}",
        timeout=timeout,
        explain=cluster.explain(name),
    )


def wait_retrying(cluster: Cluster, name: str, reason: str) -> dict[str, Any]:
    """A status taken while the connector waits to retry, which says until when.

    While an attempt is under way there is no next retry to show, so the first Reconnecting
    status seen may lack it: wait for one taken during a backoff.
    """
    return wait_for(
        lambda: (
            (status := cluster.in_phase(name, "Reconnecting", reason=reason)) and status.get("nextRetryAt") and status
        ),
        what=f"{name} to be Reconnecting / {reason} with a nextRetryAt",
        explain=cluster.explain(name),
    )


def exit_code_of(cluster: Cluster, name: str) -> int:
    return int(exit_of(cluster, name).exit_code)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


# -- failed at once (a restart would not help) ------------------------------------------------


def test_a_blocked_handshake_fails_the_livestream_with_reason_blocked(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "blocked", unique("blocked_")
    services.add_room(username, Scenario(handshake_blocked=-1))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    status = wait_phase(cluster, name, "Failed", reason="Blocked", restarts=0)

    assert exit_code_of(cluster, name) == ExitCode.BLOCKED
    assert "handshake" in status["message"]
    assert conditions(status)["Ready"] == ("False", "Blocked")
    assert services.faults(username)["handshakes_refused"] == 2  # retried once before giving up
    wait_for(lambda: "Blocked" in cluster.events(name), what="a Blocked warning event")


def test_an_age_restricted_room_fails_with_reason_age_restricted_and_no_restart(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "adult", unique("adult_")
    services.add_room(username, Scenario(age_restricted=True))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    status = wait_phase(cluster, name, "Failed", reason="AgeRestricted", restarts=0)

    assert exit_code_of(cluster, name) == ExitCode.AGE_RESTRICTED
    assert "session" in status["message"]
    assert services.stats(username)["sign_requests"] == 0  # stopped before spending sign quota


def test_a_user_not_found_is_retried_by_the_connector_then_fails_without_restarts(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "ghost", unique("ghost_")
    services.add_room(username, Scenario(not_found=True))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    wait_retrying(cluster, name, "UserNotFound")
    wait_phase(cluster, name, "Failed", reason="UserNotFound", restarts=0)

    assert exit_code_of(cluster, name) == ExitCode.USER_NOT_FOUND


def test_an_invalid_auth_close_code_from_tiktoks_push_server_is_retried_not_a_configuration_failure(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "closecode", unique("closecode_")
    services.add_room(username, Scenario(rate=20, close_code=4401, close_after=3, close_reason="INVALID_AUTH"))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    wait_phase(cluster, name, "Reconnecting", reason="ConnectionLost")
    wait_for(lambda: services.stats(username)["connections_opened"] >= 3, what="two reconnects")

    status = cluster.status(name)
    assert status["phase"] != "Failed" and status["restarts"] == 0  # the same pod keeps trying


# -- restarted, or waited for ---------------------------------------------------------------------


def test_captcha_pages_back_off_under_reason_captcha_required_then_fail_at_the_restart_limit(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "captcha", unique("captcha_")
    services.add_room(username, Scenario(captcha=-1))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    wait_phase(cluster, name, "Reconnecting", reason="CaptchaRequired")
    # The BackingOff spell between the two pods lasts about a second (QUICK_POLICY): the restart
    # shows in the final status (one restart, two failures) rather than in a status caught in passing.
    failed = wait_phase(cluster, name, "Failed", reason="RestartLimitReached", restarts=1, timeout=90)
    assert "captcha" in failed["message"] and "failed 2 times" in failed["message"]

    assert exit_code_of(cluster, name) == ExitCode.CAPTCHA
    assert services.faults(username)["captcha_pages"] == 8  # two pods, four lookups each


def test_a_spent_sign_quota_backs_off_until_the_reset_the_sign_server_announced(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "quota", unique("quota_")
    services.add_room(username, Scenario(sign_429=1000, retry_after_s=3600))
    began = time.time()
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    status = wait_phase(cluster, name, "BackingOff", reason="SignQuotaExhausted", restarts=0)

    assert exit_code_of(cluster, name) == ExitCode.SIGN_QUOTA
    retry_at = model.parse_time(status["nextRetryAt"])
    assert retry_at is not None and began + 3600 - 5 <= retry_at <= time.time() + 3600 + 5
    assert services.stats(username)["sign_429_sent"] == 1  # one request: no hammering while it waits
    assert [pod.metadata.uid for pod in cluster.pods(name)] == [cluster.pod(name).metadata.uid]  # type: ignore[union-attr]


def test_a_short_sign_rate_limit_is_waited_for_by_the_running_connector(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "ratelimit", unique("ratelimit_")
    services.add_room(username, Scenario(sign_429=1, retry_after_s=8, rate=20))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    wait_retrying(cluster, name, "SignRateLimited")
    wait_phase(cluster, name, "Live", timeout=30)

    assert cluster.status(name)["restarts"] == 0


def test_a_socket_closed_cleanly_again_and_again_backs_off_instead_of_spinning(
    cluster: Cluster, services: Services, livestreams: Livestreams
) -> None:
    name, username = "flapping", unique("flapping_")
    services.add_room(username, Scenario(rate=20, close_code=1000))
    livestreams.create(name, username, restartPolicy=QUICK_POLICY)

    wait_for(lambda: services.stats(username)["connections_opened"] >= 1, what="a first connection")
    first = time.monotonic()
    wait_phase(cluster, name, "Reconnecting", reason="ConnectionClosed")
    wait_for(lambda: services.stats(username)["connections_opened"] >= 4, what="three reconnects")

    # Backoff 1 s doubling, each at least half its ceiling: 0.5 + 1 + 2 s at the very least.
    assert time.monotonic() - first >= 3.3
    assert cluster.status(name)["restarts"] == 0  # the same pod keeps trying
