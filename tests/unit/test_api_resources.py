"""Livestream resources as the API makes, scopes, filters and shows them (pure)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tiktok_service.api import resources

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def livestream(
    name: str, *, workspace: str = "acme", username: str = "alice", created: str = "2026-01-01T00:00:00Z", **status: Any
) -> dict[str, Any]:
    body = resources.desired_livestream(
        namespace="ns", workspace_id=workspace, username=username, wait_for_live=False, event_types=None
    )
    body["metadata"].update(name=name, uid=f"uid-{name}", creationTimestamp=created)
    if status:
        body["status"] = status
    return body


@pytest.mark.parametrize("username", ["alice", "Al.ice_99", "__", "a.b", "x" * 24])
def test_a_livestream_name_is_a_valid_kubernetes_name_for_every_valid_username(username: str) -> None:
    name = resources.livestream_name("acme", username)

    assert DNS_1123.fullmatch(name), name
    assert len(name) <= 63


def test_the_same_workspace_and_user_always_get_the_same_name_whatever_the_case() -> None:
    assert resources.livestream_name("acme", "Alice") == resources.livestream_name("acme", "alice")


def test_two_workspaces_connecting_the_same_user_get_different_names() -> None:
    assert resources.livestream_name("acme", "alice") != resources.livestream_name("globex", "alice")


def test_the_desired_livestream_carries_its_workspace_as_label_and_spec() -> None:
    body = resources.desired_livestream(
        namespace="ns", workspace_id="acme", username="bob", wait_for_live=True, event_types=["tiktok.gift"]
    )

    assert body["metadata"]["labels"][resources.LABEL_WORKSPACE] == "acme"
    assert body["spec"] == {
        "username": "bob",
        "workspaceId": "acme",
        "state": "Running",
        "waitForLive": True,
        "eventTypes": ["tiktok.gift"],
    }
    assert resources.in_workspace(body, "acme")
    assert not resources.in_workspace(body, "globex")


def test_a_livestream_whose_label_and_spec_disagree_is_in_no_workspace() -> None:
    body = livestream("a")
    body["spec"]["workspaceId"] = "globex"

    assert not resources.in_workspace(body, "acme")
    assert not resources.in_workspace(body, "globex")


@pytest.mark.parametrize(("workspace", "valid"), [("acme", True), ("a", True), ("-x", False), ("a" * 64, False)])
def test_workspace_ids_must_be_label_values(workspace: str, valid: bool) -> None:
    assert resources.valid_workspace(workspace) is valid


def test_the_default_list_holds_only_active_livestreams_newest_first() -> None:
    items = [
        livestream("old", created="2026-01-01T00:00:00Z", phase="Live"),
        livestream("new", created="2026-01-02T00:00:00Z"),
        livestream("stopped", created="2026-01-03T00:00:00Z", phase="Stopped"),
        livestream("ended", created="2026-01-04T00:00:00Z", phase="Ended"),
    ]

    page, next_key = resources.select_page(items, phases=None, username=None, after=None, limit=10)

    assert [resources.name(item) for item in page] == ["new", "old"]
    assert next_key is None


def test_a_phase_filter_lists_finished_livestreams_too() -> None:
    items = [livestream("a", phase="Stopped"), livestream("b", phase="Live"), livestream("c")]

    page, _ = resources.select_page(items, phases={"Stopped", "Pending"}, username=None, after=None, limit=10)

    assert sorted(resources.name(item) for item in page) == ["a", "c"]


def test_pages_follow_each_other_without_gaps_or_repeats() -> None:
    items = [livestream(f"l{i}", created=f"2026-01-01T00:00:{i:02d}Z") for i in range(7)]
    seen: list[str] = []
    after = None
    while True:
        page, after = resources.select_page(items, phases=None, username=None, after=after, limit=3)
        seen += [resources.name(item) for item in page]
        if after is None:
            break
        after = resources.decode_list_cursor(resources.encode_list_cursor(after))

    assert seen == [f"l{i}" for i in reversed(range(7))]


def test_the_username_filter_ignores_case() -> None:
    items = [livestream("a", username="Alice"), livestream("b", username="bob")]

    page, _ = resources.select_page(items, phases=None, username="alice", after=None, limit=10)

    assert [resources.name(item) for item in page] == ["a"]


@pytest.mark.parametrize("token", ["", "!!!", "bm9uZXdsaW5l"])
def test_a_list_cursor_we_did_not_make_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        resources.decode_list_cursor(token)


def test_the_view_takes_live_status_from_the_resource() -> None:
    body = livestream("a", phase="Live", roomId="123", viewerCount=7, eventCounts={"tiktok.like": 2}, totalEvents=2)

    fields = resources.view(body, None, detail=True)

    assert fields["id"] == "uid-a"
    assert fields["phase"] == "Live"
    assert fields["room_id"] == "123"
    assert fields["viewer_count"] == 7
    assert fields["event_counts"] == {"tiktok.like": 2}
    assert fields["conditions"] == []


def test_a_new_livestream_without_status_is_pending_and_active() -> None:
    body = livestream("a")

    assert resources.view(body, None)["phase"] == "Pending"
    assert resources.is_active(body)
    assert not resources.is_finished(body)
