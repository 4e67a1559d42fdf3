"""The CRDs ship as package data and load without any path on the machine."""

from __future__ import annotations

from tiktok_service import crds


def test_every_crd_file_is_found_and_parsed() -> None:
    assert crds.names() == ["kopfpeering", "livestream"]
    kinds = {doc["spec"]["names"]["kind"] for doc in crds.manifests()}
    assert kinds == {"Livestream", "KopfPeering", "ClusterKopfPeering"}
    assert all(doc["kind"] == "CustomResourceDefinition" for doc in crds.manifests())


def test_the_livestream_crd_names_the_resource_the_components_use() -> None:
    crd = crds.load("livestream")
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
