"""What the API accepts, checked before anything reaches Kubernetes, Redis or SQL (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tiktok_service.api import schemas
from tiktok_service.settings import ApiSettings


def test_a_connect_request_needs_only_a_username() -> None:
    request = schemas.LivestreamCreate.model_validate({"username": "alice.b_2"})

    assert (request.username, request.workspace_id, request.wait_for_live, request.event_types) == (
        "alice.b_2",
        None,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "a"}, "username"),
        ({"username": "x" * 25}, "username"),
        ({"username": "@alice"}, "username"),
        ({"username": "alice", "workspace_id": "-x"}, "workspace_id"),
        ({"username": "alice", "event_types": ["tiktok.nothing"]}, "event_types"),
        ({"username": "alice", "event_types": ["tiktok.like"] * 129}, "event_types"),
        ({"username": "alice", "room": 1}, "room"),
    ],
)
def test_a_connect_request_the_crd_would_refuse_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        schemas.LivestreamCreate.model_validate(body)

    assert field in {str(part) for error in refused.value.errors() for part in error["loc"]}


def test_the_api_listens_on_8002_and_reads_api_prefixed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_NAMESPACE", "tenant-a")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")

    settings = ApiSettings()

    assert settings.port == 8002
    assert settings.namespace == "tenant-a"
    assert settings.redis_url == "redis://elsewhere:6379/0"
