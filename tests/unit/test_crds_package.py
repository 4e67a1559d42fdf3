"""The CRDs ship as package data, load without any path on the machine, and agree with the domain."""

from __future__ import annotations

from tiktok_service import crds
from tiktok_service.domain import livestream


def test_every_crd_file_is_found_and_parsed() -> None:
    assert crds.names() == ["kopfpeering", "livestream"]
    kinds = {doc["spec"]["names"]["kind"] for doc in crds.manifests()}
    assert kinds == {"Livestream", "KopfPeering", "ClusterKopfPeering"}
    assert all(doc["kind"] == "CustomResourceDefinition" for doc in crds.manifests())


def test_the_livestream_crd_is_the_resource_the_components_name() -> None:
    crd = crds.load("livestream")
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"]) == (
        livestream.GROUP,
        livestream.KIND,
        livestream.PLURAL,
    )
    assert crd["metadata"]["name"] == f"{livestream.PLURAL}.{livestream.GROUP}"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == livestream.VERSION


def test_the_crd_enums_are_the_domain_phases_and_states() -> None:
    schema = crds.load("livestream")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert schema["status"]["properties"]["phase"]["enum"] == [p.value for p in livestream.Phase]
    assert schema["spec"]["properties"]["state"]["enum"] == [s.value for s in livestream.DesiredState]
