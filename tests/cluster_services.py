"""Cluster DNS and Service routing for a test node, read from the API server as a cluster's are.

A cluster gives pods two things a test node has not: CoreDNS (a Service's name resolves to its
cluster IP) and kube-proxy (a connection to a cluster IP and port reaches one of the Service's
ready endpoints). Both read Services and EndpointSlices from the API server; so does this module:

- `ClusterDns` answers A queries for `<service>.<namespace>.svc.cluster.local` with the Service's
  cluster IP, on an address of the Service range given to the kubelet as `clusterDNS`. The kubelet
  writes it into each pod's resolv.conf with the search path `<namespace>.svc.cluster.local ...`,
  so the `redis` of `redis://redis:6379/0` resolves as in a cluster. Any other name is NXDOMAIN:
  nothing a pod asks for leaves this machine.
- `ServiceRouter` puts every Service's cluster IP on the node's bridge (pods route the Service
  range through it) and relays each port (tests/tcp_relay.py) to a ready endpoint chosen at each
  connection from the Service's EndpointSlices: kube-proxy's original userspace mode.

Decisions (which name is a Service, which endpoint a connection gets, the DNS answer) are pure
functions; the threads around them only poll and copy bytes.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from kubernetes import client

from tests.tcp_relay import Address, TcpRelay

__all__ = ["ClusterDns", "Endpoint", "ServiceRouter", "dns_answer", "pick_endpoint", "refresh_table", "service_of"]

DNS_TTL_S = 5
_POLL_S = 0.3

#: (namespace, name) -> cluster IP: what the DNS answers from.
ServiceTable = Mapping[tuple[str, str], str]


def service_of(qname: str, domain: str) -> tuple[str, str] | None:
    """(namespace, service) of `<service>.<namespace>.svc.<domain>[.]`, else None."""
    labels = qname.lower().rstrip(".").split(".")
    suffix = ["svc", *domain.lower().split(".")]
    if len(labels) != 2 + len(suffix) or labels[2:] != suffix:
        return None
    return labels[1], labels[0]


def dns_answer(query: bytes, services: ServiceTable, domain: str) -> bytes | None:
    """The authoritative answer to one DNS query; None for bytes that are no DNS query."""
    try:
        message = dns.message.from_wire(query)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(message)
    response.flags |= dns.flags.AA
    for question in message.question:
        key = service_of(question.name.to_text(), domain)
        ip = services.get(key) if key is not None else None
        if ip is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A and question.rdclass == dns.rdataclass.IN:
            response.answer.append(
                dns.rrset.from_text(question.name, DNS_TTL_S, dns.rdataclass.IN, dns.rdatatype.A, ip)
            )
        # Any other type of an existing name: NOERROR without records (no IPv6 here).
    return response.to_wire()


def refresh_table(live: MutableMapping[tuple[str, str], str], table: ServiceTable) -> None:
    """Make `live` equal to `table` in place, never lacking a Service that is in both.

    `ClusterDns` reads `live` from its own thread without a lock: emptying it before filling it
    again would answer NXDOMAIN for an existing Service to a query arriving in between. Each step
    here (one key deleted or set) is atomic for a dict, and only Services gone are deleted."""
    for key in [key for key in live if key not in table]:
        del live[key]
    live.update(table)


@dataclass(frozen=True)
class Endpoint:
    """One address of an EndpointSlice with its ports by name."""

    ip: str
    ready: bool
    ports: Mapping[str, int]


def pick_endpoint(endpoints: Iterable[Endpoint], port_name: str, turn: int) -> Address | None:
    """The `turn`-th (round robin) ready endpoint serving `port_name`, or None when none is."""
    ready = sorted((e.ip, e.ports[port_name]) for e in endpoints if e.ready and port_name in e.ports)
    return ready[turn % len(ready)] if ready else None


class ClusterDns:
    """A DNS server on (`ip`, 53/udp) answering from a live table of Services."""

    def __init__(self, ip: str, services: ServiceTable, domain: str = "cluster.local") -> None:
        self.ip, self._services, self._domain = ip, services, domain
        self.questions: Counter[str] = Counter()
        self.malformed = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((ip, 53))
        self._socket.settimeout(0.5)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"cluster-dns-{ip}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                query, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = dns_answer(query, self._services, self._domain)
            if answer is None:
                self.malformed += 1
                continue
            with contextlib.suppress(dns.exception.DNSException):
                for question in dns.message.from_wire(query).question:
                    self.questions[question.name.to_text().rstrip(".")] += 1
            with contextlib.suppress(OSError):
                self._socket.sendto(answer, peer)

    def close(self) -> None:
        self._closing.set()
        self._socket.close()
        self._thread.join(5)


def _endpoints(discovery: client.DiscoveryV1Api, namespace: str, service: str) -> list[Endpoint]:
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    ).items
    found = []
    for piece in slices:
        ports = {p.name or "": p.port for p in piece.ports or [] if p.port is not None}
        for endpoint in piece.endpoints or []:
            ready = bool(endpoint.conditions is None or endpoint.conditions.ready is not False)
            found += [Endpoint(ip=ip, ready=ready, ports=ports) for ip in endpoint.addresses]
    return found


class ServiceRouter:
    """Keeps every ClusterIP Service of the cluster on `device` with a relay per port.

    `fixed` gives targets for Services whose endpoints are not pods (the `kubernetes` Service:
    the API server on loopback). `services` is the table `ClusterDns` answers from."""

    def __init__(self, api: client.ApiClient, device: str, *, fixed: Mapping[tuple[str, str], Address]) -> None:
        self._core, self._discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        self._device, self._fixed = device, dict(fixed)
        self.services: dict[tuple[str, str], str] = {}
        self.relays: dict[Address, TcpRelay] = {}
        self._ips: set[str] = set()
        self.errors: list[str] = []
        self._turns = itertools.count()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self.sync()
        self._thread = threading.Thread(target=self._run, name=f"service-router-{device}", daemon=True)
        self._thread.start()

    def _target(self, namespace: str, name: str, port_name: str) -> Callable[[], Address | None]:
        if (namespace, name) in self._fixed:
            fixed = self._fixed[(namespace, name)]
            return lambda: fixed

        def resolve() -> Address | None:
            return pick_endpoint(_endpoints(self._discovery, namespace, name), port_name, next(self._turns))

        return resolve

    def sync(self) -> None:
        """One round: new Services get their address and relays, deleted ones lose them."""
        table: dict[tuple[str, str], str] = {}
        wanted: dict[Address, tuple[str, str, str]] = {}  # (ip, port) -> namespace, name, port name
        for service in self._core.list_service_for_all_namespaces().items:
            ip = service.spec.cluster_ip
            if service.spec.type not in (None, "ClusterIP") or not ip or ip == "None":
                continue
            namespace, name = service.metadata.namespace, service.metadata.name
            table[(namespace, name)] = ip
            for port in service.spec.ports or []:
                if (port.protocol or "TCP") == "TCP":
                    wanted[(ip, port.port)] = (namespace, name, port.name or "")
        with self._lock:
            if self._closing.is_set():  # `close` may have given up waiting: add nothing it will not remove
                return
            refresh_table(self.services, table)
            for listen in [listen for listen in self.relays if listen not in wanted]:
                self.relays.pop(listen).close()
            for ip in self._ips - set(table.values()):
                subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", self._device], capture_output=True)
                self._ips.discard(ip)
            for ip in set(table.values()) - self._ips:
                self._add_address(ip)
            for listen, (namespace, name, port_name) in wanted.items():
                if listen in self.relays or listen[0] not in self._ips:
                    continue
                try:
                    self.relays[listen] = TcpRelay(listen, self._target(namespace, name, port_name))
                except OSError as exc:
                    self.errors.append(f"{namespace}/{name} {listen[0]}:{listen[1]}: {exc}")

    def _add_address(self, ip: str) -> None:
        done = subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", self._device], capture_output=True, text=True)
        if done.returncode == 0:
            self._ips.add(ip)
        else:
            self.errors.append(f"address {ip} on {self._device}: {done.stderr.strip()}")

    def _run(self) -> None:
        while not self._closing.wait(_POLL_S):
            try:
                self.sync()
            except Exception as exc:  # a failed round is retried; kept for the report
                self.errors.append(f"sync: {exc}")

    def accepted(self, namespace: str, name: str) -> int:
        """Connections relayed so far to Service `namespace/name`."""
        ip = self.services.get((namespace, name))
        return sum(relay.accepted for (listen_ip, _), relay in self.relays.items() if listen_ip == ip)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(5)
        with self._lock:
            for relay in self.relays.values():
                relay.close()
            self.relays.clear()
            for ip in self._ips:
                subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", self._device], capture_output=True)
            self._ips.clear()


@contextlib.contextmanager
def cluster_networking(
    api: client.ApiClient, device: str, dns_ip: str, *, fixed: Mapping[tuple[str, str], Address]
) -> Iterator[tuple[ServiceRouter, ClusterDns]]:
    """Service routing on `device` and the cluster DNS on `dns_ip` (one of the router's addresses:
    give it a Service, e.g. kube-system/kube-dns, so the API server allocates it to nothing else)."""
    router = ServiceRouter(api, device, fixed=fixed)
    try:
        # Cluster IPs are host-wide: another test node on this machine may hold the same one.
        if router.errors:
            raise AssertionError("Service routing failed: " + "; ".join(router.errors))
        if dns_ip not in router.services.values():
            raise AssertionError(f"no Service holds the cluster DNS address {dns_ip}")
        dns_server = ClusterDns(dns_ip, router.services)
        try:
            yield router, dns_server
        finally:
            dns_server.close()
    finally:
        router.close()
