"""The test node's cluster DNS and Service routing decisions (tests/cluster_services.py)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from tests.cluster_services import Endpoint, dns_answer, pick_endpoint, service_of

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
