"""The test node's cluster DNS and Service routing decisions (tests/cluster_services.py)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from kubernetes import client

from tests import cluster_services
from tests.cluster_services import Endpoint, ServiceRouter, dns_answer, pick_endpoint, refresh_table, service_of

SERVICES = {("tiktok-service", "redis"): "10.0.0.42"}


def ask(name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    answer = dns_answer(query.to_wire(), SERVICES, "cluster.local")
    assert answer is not None
    response = dns.message.from_wire(answer)
    assert response.id == query.id and response.flags & dns.flags.QR and response.flags & dns.flags.AA
    return response


def test_a_service_name_is_namespace_and_service_under_svc_of_the_domain() -> None:
    assert service_of("redis.tiktok-service.svc.cluster.local.", "cluster.local") == ("tiktok-service", "redis")
    assert service_of("Redis.Tiktok-Service.SVC.cluster.local", "cluster.local") == ("tiktok-service", "redis")
    assert service_of("redis.svc.cluster.local", "cluster.local") is None
    assert service_of("redis.tiktok-service.svc.cluster.local.example.com", "cluster.local") is None
    assert service_of("a.redis.tiktok-service.svc.cluster.local", "cluster.local") is None
    assert service_of("redis.tiktok-service.pod.cluster.local", "cluster.local") is None


def test_an_existing_service_resolves_to_its_cluster_ip() -> None:
    response = ask("redis.tiktok-service.svc.cluster.local")

    assert response.rcode() == dns.rcode.NOERROR
    assert [(rrset.name.to_text(), [r.to_text() for r in rrset]) for rrset in response.answer] == [
        ("redis.tiktok-service.svc.cluster.local.", ["10.0.0.42"])
    ]


def test_other_types_of_an_existing_service_are_empty_and_unknown_names_do_not_exist() -> None:
    aaaa = ask("redis.tiktok-service.svc.cluster.local", "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
    # The search path's other tries, other namespaces and outside names: NXDOMAIN, never forwarded.
    for name in ("redis.svc.cluster.local", "redis.other.svc.cluster.local", "redis", "tiktok.com"):
        assert ask(name).rcode() == dns.rcode.NXDOMAIN, name


def test_bytes_that_are_no_dns_query_get_no_answer() -> None:
    assert dns_answer(b"\x00\x01garbage", SERVICES, "cluster.local") is None


def test_endpoints_are_ready_ones_serving_the_port_in_turn() -> None:
    endpoints = [
        Endpoint(ip="10.1.0.3", ready=True, ports={"http": 8765}),
        Endpoint(ip="10.1.0.2", ready=True, ports={"http": 8765}),
        Endpoint(ip="10.1.0.4", ready=False, ports={"http": 8765}),
        Endpoint(ip="10.1.0.5", ready=True, ports={"metrics": 9000}),
    ]

    assert [pick_endpoint(endpoints, "http", turn) for turn in range(3)] == [
        ("10.1.0.2", 8765),
        ("10.1.0.3", 8765),
        ("10.1.0.2", 8765),
    ]
    assert pick_endpoint(endpoints, "metrics", 7) == ("10.1.0.5", 9000)
    assert pick_endpoint(endpoints[2:3], "http", 0) is None


class WatchedTable(dict[tuple[str, str], str]):
    """A Service table checking after every change that a Service kept throughout never went missing."""

    def __init__(self, initial: dict[tuple[str, str], str], kept: set[tuple[str, str]]) -> None:
        super().__init__(initial)
        self.kept, self.gaps = kept, 0

    def _check(self) -> None:
        self.gaps += not self.kept <= self.keys()

    def __delitem__(self, key: tuple[str, str]) -> None:
        super().__delitem__(key)
        self._check()

    def __setitem__(self, key: tuple[str, str], value: str) -> None:
        super().__setitem__(key, value)
        self._check()

    def clear(self) -> None:
        super().clear()
        self._check()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._check()

    def pop(self, *args: Any) -> Any:
        popped = super().pop(*args)
        self._check()
        return popped


def test_a_refreshed_table_never_lacks_a_service_that_stays() -> None:
    """The DNS reads the table unlocked: a Service in both rounds must resolve at every moment."""
    redis, api, gone = ("ns", "redis"), ("ns", "api"), ("ns", "old")
    live = WatchedTable({redis: "10.0.0.1", api: "10.0.0.2", gone: "10.0.0.3"}, kept={redis, api})

    refresh_table(live, {redis: "10.0.0.1", api: "10.0.0.9", ("ns", "new"): "10.0.0.4"})

    assert live == {redis: "10.0.0.1", api: "10.0.0.9", ("ns", "new"): "10.0.0.4"}
    assert live.gaps == 0


class BlockingCore:
    """`list_service_for_all_namespaces` of an API server that answers the second call only when released."""

    def __init__(self, services: list[client.V1Service]) -> None:
        self.services, self.calls = services, 0
        self.asked, self.release = threading.Event(), threading.Event()

    def list_service_for_all_namespaces(self) -> SimpleNamespace:
        self.calls += 1
        if self.calls > 1:
            self.asked.set()
            assert self.release.wait(10)
        return SimpleNamespace(items=self.services)


@pytest.fixture
def ip_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The `ip` commands the router runs, recorded instead of run (they succeed)."""
    commands: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr("tests.cluster_services.subprocess.run", run)
    yield commands


def test_a_round_answered_after_close_adds_no_address(
    monkeypatch: pytest.MonkeyPatch, ip_commands: list[list[str]]
) -> None:
    """`close` gives up waiting for a round stuck in the API: that round must not add what close removed."""
    service = client.V1Service(
        metadata=client.V1ObjectMeta(namespace="ns", name="redis"),
        spec=client.V1ServiceSpec(type="ClusterIP", cluster_ip="10.96.0.20", ports=[]),
    )
    core = BlockingCore([service])
    monkeypatch.setattr("tests.cluster_services.client.CoreV1Api", lambda api: core)
    monkeypatch.setattr("tests.cluster_services.client.DiscoveryV1Api", lambda api: None)
    monkeypatch.setattr(cluster_services, "_POLL_S", 3600.0)  # no background round: this test drives them
    router = ServiceRouter(None, "br-test", fixed={})  # type: ignore[arg-type]
    assert router._ips == {"10.96.0.20"}

    stuck = threading.Thread(target=router.sync)
    stuck.start()
    assert core.asked.wait(10)
    router.close()
    core.release.set()
    stuck.join(10)

    assert not stuck.is_alive()
    assert router._ips == set() and router.relays == {}
    adds = [argv for argv in ip_commands if argv[:3] == ["ip", "addr", "add"]]
    assert adds == [["ip", "addr", "add", "10.96.0.20/32", "dev", "br-test"]]  # the first round's only
