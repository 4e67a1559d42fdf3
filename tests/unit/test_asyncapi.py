"""The stream contract (`docs/asyncapi.yaml`) is a valid AsyncAPI 3 document that describes every stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from tiktok_service.connector import asyncapi
from tiktok_service.domain import naming
from tiktok_service.domain.catalogue import KINDS

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / asyncapi.DOCUMENT_PATH
SPEC_SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi-3.0.0" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SPEC_SCHEMA.read_text(encoding="utf-8")))


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def test_the_document_is_what_the_catalogue_generates() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == asyncapi.render(), "run `make schemas`"


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any], validator: Any) -> None:
    problems = [f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert problems == []


def test_the_validator_refuses_a_broken_document(document: dict[str, Any], validator: Any) -> None:
    broken = json.loads(json.dumps(document))
    del broken["channels"]["deadletter"]["address"]
    broken["operations"]["receiveLivestream"]["action"] = "listen"
    assert not validator.is_valid(broken)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    for ref in references(document):
        if ref.startswith("#/"):
            node: Any = document
            for part in ref[2:].split("/"):
                node = node[part]
        else:
            assert (DOCUMENT.parent / ref).resolve().is_file(), ref


def test_every_event_type_has_its_stream_and_its_schema(document: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {naming.type_stream(kind) for kind in KINDS} <= addresses
    assert naming.DEAD_LETTER_STREAM in addresses
    assert naming.livestream_stream("{livestreamId}") in addresses
    payloads = {m["payload"]["$ref"] for m in document["components"]["messages"].values() if "$ref" in m["payload"]}
    assert {f"{asyncapi.SCHEMA_DIR}/{kind.value}.schema.json" for kind in KINDS} <= payloads
