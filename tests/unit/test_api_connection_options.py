"""Connection options through the API's connect: Secret names only, confined to the workspace (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tiktok_service import crds
from tiktok_service.api import resources, schemas


def test_connect_options_become_the_livestreams_spec_connection() -> None:
    request = schemas.LivestreamCreate.model_validate(
        {
            "username": "alice",
            "room_id": "7300000000000000001",
            "proxy_secret": "acme--egress",
            "proxy_secret_key": "eu",
            "session_secret": "acme--account",
            "locale": {"language": "de", "region": "AT"},
        }
    )

    body = resources.desired_livestream(
        namespace="ns",
        workspace_id="acme",
        username=request.username,
        wait_for_live=False,
        event_types=None,
        connection=request.connection_spec(),
    )

    assert body["spec"]["connection"] == {
        "roomId": "7300000000000000001",
        "proxySecretRef": {"name": "acme--egress", "key": "eu"},
        "sessionSecretRef": {"name": "acme--account"},
        "locale": {"language": "de", "region": "AT"},
    }
    assert request.secrets() == ["acme--egress", "acme--account"]


def test_a_connect_without_options_has_no_spec_connection() -> None:
    request = schemas.LivestreamCreate.model_validate({"username": "alice"})

    assert request.connection_spec() == {}
    body = resources.desired_livestream(
        namespace="ns", workspace_id="acme", username="alice", wait_for_live=False, event_types=None, connection={}
    )
    assert "connection" not in body["spec"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"room_id": "0"}, "room_id"),
        ({"room_id": 7300000000000000001}, "room_id"),
        ({"proxy_secret": "Acme_Egress"}, "proxy_secret"),
        ({"proxy_secret_key": "a/b"}, "proxy_secret_key"),
        ({"session_secret": "acme-account.v2"}, "session_secret"),
        ({"locale": {"language": "German"}}, "locale"),
        ({"locale": {"currency": "EUR"}}, "locale"),
        ({"proxies": "http://user:pass@host:3128"}, "proxies"),
        ({"session_id": "c0ffee"}, "session_id"),
    ],
)
def test_bad_options_and_raw_credentials_are_refused(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        schemas.LivestreamCreate.model_validate({"username": "alice", **options})

    assert field in {str(part) for error in refused.value.errors() for part in error["loc"]}


@pytest.mark.parametrize(
    ("workspace", "secret", "allowed"),
    [
        ("acme", "acme--egress", True),
        ("acme", "acme--corp--session", True),  # acme's Secret named corp--session
        ("acme-corp", "acme-corp--session", True),
        ("acme", "acme-corp--session", False),  # acme-corp's, not acme's
        ("acme", "acme-corp-session", False),
        ("acme", "acme-egress", False),
        ("acme", "acme--", False),
        ("acme", "acmeco--egress", False),
        ("acme", "globex--egress", False),
        ("acme", "egress", False),
        ("acme-corp", "acme--corp-session", False),
    ],
)
def test_a_workspace_may_name_only_its_own_secrets(workspace: str, secret: str, allowed: bool) -> None:
    assert resources.secret_allowed(workspace, secret) is allowed
    assert (resources.secret_refusal(workspace, secret) is None) is allowed


@pytest.mark.parametrize("workspace", ["acme.corp", "acme_corp", "Acme-Corp", "ACME", "acme--corp"])
def test_a_workspace_id_that_is_not_its_own_prefix_owns_no_secrets(workspace: str) -> None:
    """Folding case, `.` or `_` would let these use `acme-corp`'s Secrets (and each other's)."""
    assert resources.valid_workspace(workspace) or workspace == "acme--corp"
    assert not resources.can_own_secrets(workspace)
    for secret in ("acme-corp--session", f"{workspace.lower()}--session", "acme--corp--session"):
        assert not resources.secret_allowed(workspace, secret)
    refusal = resources.secret_refusal(workspace, "acme-corp--session")
    assert refusal is not None and "cannot reference Secrets" in refusal


def test_secret_owners_are_exact_two_different_workspaces_never_share_a_secret() -> None:
    workspaces = ["a", "a-b", "a-b-c", "ab", "b", "a-bc", "ab-c", "a1", "1a"]
    names = [f"{w}--{rest}" for w in workspaces for rest in ("x", "b--x", "c-x", "b-c--x")]

    for name in names:
        owners = [w for w in workspaces if resources.secret_allowed(w, name)]
        assert len(owners) == 1, (name, owners)
        assert name.startswith(owners[0] + "--")


@pytest.mark.parametrize(
    ("existing", "requested", "patch"),
    [
        ({}, {}, None),
        ({"roomId": "1"}, {}, None),  # connecting again without options keeps them
        ({"roomId": "1"}, {"roomId": "1"}, None),
        ({"roomId": "1"}, {"roomId": "2"}, {"roomId": "2"}),
        (
            {"proxySecretRef": {"name": "acme--a", "key": "eu"}},
            {"proxySecretRef": {"name": "acme--b", "key": "proxies"}},
            {"proxySecretRef": {"name": "acme--b", "key": "proxies"}},
        ),
        (
            {"locale": {"language": "de", "region": "AT"}, "roomId": "1"},
            {"locale": {"language": "fr"}},
            {"locale": {"language": "fr", "region": None}},  # an option is replaced whole
        ),
        ({"roomId": "1"}, {"sessionSecretRef": {"name": "acme--s"}}, {"sessionSecretRef": {"name": "acme--s"}}),
    ],
)
def test_connecting_again_patches_only_the_options_that_differ(
    existing: dict[str, Any], requested: dict[str, Any], patch: dict[str, Any] | None
) -> None:
    assert resources.connection_patch(existing, requested) == patch


def test_a_proxy_secret_without_a_key_names_the_crds_default_key() -> None:
    crd = crds.load("livestream")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    key = spec["connection"]["properties"]["proxySecretRef"]["properties"]["key"]
    assert key["default"] == resources.DEFAULT_PROXY_SECRET_KEY
    assert resources.connection_spec(proxy_secret="acme--egress") == {
        "proxySecretRef": {"name": "acme--egress", "key": resources.DEFAULT_PROXY_SECRET_KEY}
    }


def test_the_view_shows_the_options_by_name() -> None:
    body = resources.desired_livestream(
        namespace="ns",
        workspace_id="acme",
        username="alice",
        wait_for_live=False,
        event_types=None,
        connection=resources.connection_spec(room_id="42", session_secret="acme--account", locale={"region": "DE"}),
    )
    body["metadata"].update(uid="0b3f6a4e-8c1d-4d59-9a55-0c6b1f1f2a10", creationTimestamp="2026-01-01T00:00:00Z")

    shown = schemas.LivestreamPublic(**resources.view(body, None))

    assert shown.connection.model_dump(exclude_none=True) == {
        "room_id": "42",
        "session_secret": "acme--account",
        "locale": {"region": "DE"},
    }


RUNNING = {"state": "Running", "waitForLive": True, "eventTypes": ["tiktok.gift"], "connection": {"roomId": "1"}}


@pytest.mark.parametrize(
    ("existing", "desired", "carried", "patch"),
    [
        (RUNNING, {"waitForLive": False}, [], None),  # a bare connect changes nothing
        ({**RUNNING, "state": "Stopped"}, {"waitForLive": False}, [], {"state": "Running"}),
        ({**RUNNING, "state": "Paused"}, {"waitForLive": True}, ["waitForLive"], {"state": "Running"}),
        (RUNNING, {"waitForLive": False}, ["waitForLive"], {"waitForLive": False}),
        ({"state": "Running"}, {"waitForLive": False}, ["waitForLive"], None),  # absent means false
        (RUNNING, {"waitForLive": True, "eventTypes": ["tiktok.gift"]}, ["waitForLive", "eventTypes"], None),
        (RUNNING, {"waitForLive": False}, ["eventTypes"], {"eventTypes": None}),  # empty: every type again
        (
            {**RUNNING, "state": "Stopped"},
            {"eventTypes": ["tiktok.comment"], "connection": {"roomId": "2"}},
            ["eventTypes"],
            {"state": "Running", "eventTypes": ["tiktok.comment"], "connection": {"roomId": "2"}},
        ),
    ],
)
def test_connecting_again_patches_the_spec_with_what_the_request_carries(
    existing: dict[str, Any], desired: dict[str, Any], carried: list[str], patch: dict[str, Any] | None
) -> None:
    assert resources.reconnect_patch(existing, desired, carried) == patch


def test_the_options_a_request_carries_are_the_fields_its_client_set() -> None:
    bare = schemas.LivestreamCreate.model_validate({"username": "alice"})
    explicit = schemas.LivestreamCreate.model_validate({"username": "alice", "wait_for_live": False, "event_types": []})

    assert not set(resources.RECONNECT_OPTIONS.values()) & bare.model_fields_set
    assert set(resources.RECONNECT_OPTIONS.values()) <= explicit.model_fields_set
    assert set(resources.RECONNECT_OPTIONS.values()) <= set(schemas.LivestreamCreate.model_fields)
