"""The JSON Schemas, README table and CRD type list are current, valid, and the checker catches bad events."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema_rs
import pytest
from TikTokLive.events import proto_events as pe

from tests.contract_support import ContractViolation, stream_violations, validate_envelope, violations
from tiktok_service import crds, schemas
from tiktok_service.connector import contract
from tiktok_service.domain import event_schemas
from tiktok_service.domain.catalogue import KINDS
from tiktok_service.domain.events import EVENT_TYPES, Envelope, EventType, User
from tiktok_service_dev import schemas as generator

ROOT = Path(__file__).resolve().parents[2]


def comment_envelope() -> Envelope:
    return Envelope(
        id="7301234567890123456",
        type=EventType.COMMENT,
        livestream_id="0d1f5a52-7a3c-4a8e-9a57-2c4bcbf0e001",
        room_id=7300000000000000001,
        time_ms=1_700_000_000_123,
        user=User(42, "alice", "Alice", avatar_url="https://p16/a.webp", is_moderator=False, badges=()),
        data={"text": "hello", "language": "en"},
    )


def test_generated_files_are_current() -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in generator.planned().items() if path.read_text() != text]
    assert not stale, f"run `make schemas`: {stale}"
    assert set(schemas.names()) == {schemas.ENVELOPE} | {t.value for t in EVENT_TYPES}


@pytest.mark.parametrize("name", [schemas.ENVELOPE, *sorted(t.value for t in EVENT_TYPES)])
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = schemas.load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema_rs.meta.validate(schema)


def test_the_crd_accepts_exactly_the_event_types() -> None:
    crd = crds.load("livestream")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    event_types = spec["eventTypes"]
    assert set(event_types["items"]["enum"]) == {t.value for t in EVENT_TYPES}
    assert event_types["maxItems"] >= len(EVENT_TYPES)


def test_the_readme_table_lists_every_type() -> None:
    readme = (ROOT / "README.md").read_text()
    assert contract.readme_table() in readme
    for kind in EVENT_TYPES:
        assert f"| `{kind.value}` |" in readme


def test_summary_fields_never_shadow_a_field_of_the_decoded_message() -> None:
    for kind, derived in event_schemas.DERIVED.items():
        names = {f.name for f in contract.proto_fields(KINDS[kind].methods[0])}
        assert not names & set(derived), kind


def test_overridden_fields_exist_in_the_message() -> None:
    names = {f.name for f in contract.proto_fields("WebcastControlMessage")}
    assert "action" in names


def test_every_method_of_a_decoded_kind_is_in_the_library() -> None:
    for kind, info in KINDS.items():
        if kind not in event_schemas.CORE:
            assert info.methods and info.methods[0] in pe.EVENT_MAPPINGS


def test_a_valid_envelope_passes_the_checker() -> None:
    envelope = comment_envelope()
    validate_envelope(envelope.encode())
    validate_envelope(envelope.to_cloudevent())
    assert (
        violations(
            Envelope("connect-1-1", EventType.CONNECT, "ls", 0, 1, None, {"username": "a", "room_id": "0"}).encode()
        )
        == []
    )


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["data"].pop("text"), "text"),
        (lambda d: d["data"].update(comment="x"), "comment"),
        (lambda d: d["data"]["user"].update(id=42), "data/user"),
        (lambda d: d["data"]["user"].update(is_moderator="no"), "data/user"),
        (lambda d: d.update(roomid=7), "roomid"),
        (lambda d: d.update(type="tiktok.nonsense"), "type"),
        (lambda d: d.pop("time"), "time"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_the_checker_rejects_broken_events_and_says_where(mutate: object, expected: str) -> None:
    doc = copy.deepcopy(comment_envelope().to_cloudevent())
    mutate(doc)  # type: ignore[operator]
    errors = violations(doc)
    assert errors and any(expected in e for e in errors), errors
    with pytest.raises(ContractViolation):
        validate_envelope(doc)


def test_bytes_that_are_not_an_event_are_rejected() -> None:
    assert violations(b"not json")
    assert violations(b"[1]")


async def test_the_stream_scan_finds_a_bad_entry_among_good_ones(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from tiktok_service.domain import naming

    client = aioredis.from_url(redis_url)
    try:
        good = comment_envelope()
        bad = comment_envelope()
        bad.data = {"comment": "wrong field"}
        bad_entries = set()
        for envelope in (good, bad):
            fields = {
                naming.FIELD_TYPE: envelope.type.value,
                naming.FIELD_ID: envelope.id,
                naming.FIELD_EVENT: envelope.encode(),
            }
            for stream in (naming.type_stream(envelope.type), naming.livestream_stream(envelope.livestream_id)):
                entry = (await client.xadd(stream, fields)).decode()  # type: ignore[arg-type]
                if envelope is bad:
                    bad_entries.add(f"{stream} {entry}")
        problems = await stream_violations(redis_url)
        assert {" ".join(p.split(" ")[:2]).rstrip(":") for p in problems} == bad_entries
        assert any("text" in p for p in problems) and any("comment" in p for p in problems)
        # Leave only valid events, so this test's own teardown check passes.
        await client.flushall()
    finally:
        await client.aclose()
