"""Connection options through the API's connect: Secret names only, confined to the workspace (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tiktok_service.api import resources, schemas


def test_connect_options_become_the_livestreams_spec_connection() -> None:
    request = schemas.LivestreamCreate.model_validate(
        {
            "username": "alice",
            "room_id": "7300000000000000001",
            "proxy_secret": "acme-egress",
            "proxy_secret_key": "eu",
            "session_secret": "acme-account",
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
        "proxySecretRef": {"name": "acme-egress", "key": "eu"},
        "sessionSecretRef": {"name": "acme-account"},
        "locale": {"language": "de", "region": "AT"},
    }
    assert request.secrets() == ["acme-egress", "acme-account"]


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
        ("acme", "acme-egress", True),
        ("Acme.EU", "acme-eu-account", True),
        ("acme", "acme-", False),
        ("acme", "acmeco-egress", False),
        ("acme", "globex-egress", False),
        ("acme", "egress", False),
    ],
)
def test_a_workspace_may_name_only_its_own_secrets(workspace: str, secret: str, allowed: bool) -> None:
    assert resources.secret_allowed(workspace, secret) is allowed


def test_the_view_shows_the_options_by_name() -> None:
    body = resources.desired_livestream(
        namespace="ns",
        workspace_id="acme",
        username="alice",
        wait_for_live=False,
        event_types=None,
        connection=resources.connection_spec(room_id="42", session_secret="acme-account", locale={"region": "DE"}),
    )
    body["metadata"].update(uid="0b3f6a4e-8c1d-4d59-9a55-0c6b1f1f2a10", creationTimestamp="2026-01-01T00:00:00Z")

    shown = schemas.LivestreamPublic(**resources.view(body, None))

    assert shown.connection.model_dump(exclude_none=True) == {
        "room_id": "42",
        "session_secret": "acme-account",
        "locale": {"region": "DE"},
    }
