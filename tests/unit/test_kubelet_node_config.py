"""The test node's pure decisions: which subnet its bridge takes, and what containerd is told."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from tests.kubelet_support import kubelet_config
from tests.node_runtime import NodeUnavailableError, cni_config, containerd_config, pick_subnet


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_the_bridge_takes_the_first_24_from_the_seed_that_overlaps_nothing_in_use() -> None:
    used = [net("10.213.5.0/24"), net("10.213.6.0/23"), net("192.0.2.0/24")]
    assert pick_subnet(used, seed=5) == net("10.213.8.0/24")
    assert pick_subnet(used, seed=4) == net("10.213.4.0/24")
    assert pick_subnet([], seed=256 + 3) == net("10.213.3.0/24")  # wraps around the /16


def test_a_network_covering_the_whole_range_leaves_no_subnet() -> None:
    with pytest.raises(NodeUnavailableError, match="no free /24"):
        pick_subnet([net("10.0.0.0/8")], seed=0)


def test_containerd_is_told_to_restrict_oom_adjustments_and_to_use_cgroupfs(tmp_path: Path) -> None:
    parsed = tomllib.loads(containerd_config(tmp_path, pause_image="local/pause:1", cni_conf_dir=tmp_path / "net.d"))
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "local/pause:1"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(tmp_path / "net.d")}
    assert parsed["root"].startswith(str(tmp_path)) and parsed["grpc"]["address"].startswith(str(tmp_path))


def test_pods_are_routed_through_the_bridge_address_without_nat(tmp_path: Path) -> None:
    address = ipaddress.IPv4Interface("10.213.9.1/24")
    (bridge,) = cni_config(bridge="tkt1", address=address, ipam_dir=tmp_path)["plugins"]  # type: ignore[misc]
    assert (bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == ("tkt1", True, False)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.213.9.0/24", "gateway": "10.213.9.1"}]]


def test_the_service_range_is_routed_through_the_bridge_when_asked(tmp_path: Path) -> None:
    address = ipaddress.IPv4Interface("10.213.9.1/24")
    (bare,) = cni_config(bridge="tkt1", address=address, ipam_dir=tmp_path)["plugins"]  # type: ignore[misc]
    (routed,) = cni_config(bridge="tkt1", address=address, ipam_dir=tmp_path, routes=["10.0.0.0/24"])["plugins"]  # type: ignore[misc]
    assert bare["ipam"]["routes"] == []  # only the bridge's own /24: nothing else is reachable
    assert routed["ipam"]["routes"] == [{"dst": "10.0.0.0/24"}]  # through the ipam gateway, the bridge


def test_a_kubelet_gets_its_own_cgroup_root(tmp_path: Path) -> None:
    config = kubelet_config(
        work=tmp_path, address="10.213.9.1", port=1, healthz_port=2, runtime_socket=tmp_path / "s", cgroup_root="/n1"
    )
    assert config["cgroupRoot"] == "/n1"
