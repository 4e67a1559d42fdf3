"""Pure helpers: pod observation, owner lookup, names, heartbeat parsing, livestreams rows."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from tiktok_service.database.livestreams_repository import LivestreamStatus
from tiktok_service.domain.connector_status import ConnectorPhase, ConnectorStatus
from tiktok_service.operator import model, store

UID = "0b3f6a4e-8c1d-4d59-9a55-0c6b1f1f2a10"


def pod_body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "ls-alice",
            "namespace": "rooms",
            "uid": "p-1",
            "annotations": {model.ANNOTATION_SPEC_HASH: "abc", model.ANNOTATION_RESTARTS: "2"},
            "ownerReferences": [
                {"apiVersion": model.API_VERSION, "kind": "Livestream", "name": "alice", "uid": UID, "controller": True}
            ],
        },
        "spec": {"nodeName": "node-1"},
        "status": status,
    }


def test_a_failed_pod_is_observed_with_its_exit_code_and_times() -> None:
    terminated = {
        "exitCode": 10,
        "reason": "Error",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:01:00Z",
    }
    body = pod_body(phase="Failed", containerStatuses=[{"name": "connector", "state": {"terminated": terminated}}])

    observed = model.observe_pod(body)

    assert (observed.phase, observed.exit_code, observed.reason) == ("Failed", 10, "Error")
    assert observed.finished_at is not None and observed.started_at is not None
    assert observed.finished_at - observed.started_at == 60
    assert (observed.spec_hash, observed.restarts, observed.node_name) == ("abc", 2, "node-1")
    assert observed.terminated


def test_an_unschedulable_pod_is_observed_with_the_schedulers_message() -> None:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}

    observed = model.observe_pod(pod_body(phase="Pending", conditions=[condition]))

    assert (observed.phase, observed.reason, observed.message) == ("Pending", "Unschedulable", "0/1 nodes")


def test_an_evicted_pod_keeps_the_eviction_as_its_reason() -> None:
    observed = model.observe_pod(pod_body(phase="Failed", reason="Evicted", message="low on memory"))

    assert (observed.reason, observed.exit_code) == ("Evicted", None)


def test_a_pod_being_deleted_is_observed_as_deleting() -> None:
    body = pod_body(phase="Running")
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"

    assert model.observe_pod(body).deleting


def test_a_pod_just_created_counts_until_the_index_shows_it() -> None:
    created = model.PodObservation(name="ls-alice", uid="p-2", phase="Pending")
    finished = model.PodObservation(name="ls-alice", uid="p-1", phase="Failed")

    assert model.expected_pod(None, created=created, deleted_uid=None) == created
    assert model.expected_pod(finished, created=created, deleted_uid="p-1") == created
    assert model.expected_pod(created, created=created, deleted_uid=None) == created


def test_a_pod_just_deleted_counts_as_deleting_until_the_index_shows_it() -> None:
    running = model.PodObservation(name="ls-alice", uid="p-1", phase="Running")

    seen = model.expected_pod(running, created=None, deleted_uid="p-1")

    assert seen is not None and seen.deleting and seen.uid == "p-1"
    assert model.expected_pod(running, created=None, deleted_uid="p-0") == running
    assert model.expected_pod(None, created=None, deleted_uid="p-1") is None


def test_the_owner_of_a_pod_is_its_controlling_livestream() -> None:
    assert model.owner_key(pod_body()) == ("rooms", "alice")


def test_a_pod_owned_by_something_else_has_no_livestream() -> None:
    body = pod_body()
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "controller": True}
    ]

    assert model.owner_key(body) is None


def test_label_values_are_trimmed_to_alphanumeric_ends_and_63_characters() -> None:
    assert model.label_value("alice") == "alice"
    assert model.label_value("_alice_")[0].isalnum() and model.label_value("_alice_")[-1].isalnum()
    assert len(model.label_value("a" * 100)) <= 63
    assert model.label_value("_alice_") != model.label_value("alice")


def test_times_round_trip_at_second_precision() -> None:
    assert model.format_time(model.parse_time("2026-03-04T05:06:07Z")) == "2026-03-04T05:06:07Z"
    assert model.format_time(None) is None and model.parse_time("") is None


def test_a_heartbeat_is_read_from_the_connectors_hash() -> None:
    raw = ConnectorStatus(phase=ConnectorPhase.LIVE, room_id=42, viewer_count=7).to_hash(now_ms=1234)

    beat = store.heartbeat_from_hash(raw)

    assert beat is not None
    assert (beat.status.phase, beat.status.room_id, beat.updated_at_ms) == (ConnectorPhase.LIVE, 42, 1234)
    assert store.heartbeat_from_hash({}) is None
    assert store.heartbeat_from_hash({"phase": "dancing"}) is None


def test_a_status_maps_onto_a_livestreams_row() -> None:
    livestream = {"metadata": {"uid": UID}, "spec": {"username": "alice", "workspaceId": "ws"}}
    status = {
        "phase": "WaitingForLive",
        "roomId": "7312345678901234567",
        "viewerCount": 3,
        "eventCounts": {"tiktok.like": 1},
        "lastEventAt": "2026-01-01T00:00:00Z",
        "reason": "UserOffline",
    }

    row = store.row_from_status(livestream, status)

    assert row["id"] == uuid.UUID(UID)
    assert (row["username"], row["workspace_id"], row["status"]) == ("alice", "ws", LivestreamStatus.WAITING_FOR_LIVE)
    assert (row["room_id"], row["viewer_count"], row["event_counts"]) == (7312345678901234567, 3, {"tiktok.like": 1})
    assert row["last_event_at"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert (row["connected_at"], row["reason"], row["message"]) == (None, "UserOffline", None)
