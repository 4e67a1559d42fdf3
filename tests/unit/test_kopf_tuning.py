"""kopf's seams used by the operator still exist in the pinned kopf, and behave as claimed."""

from __future__ import annotations

import importlib
import json
from typing import Any

import kopf
import orjson

from tiktok_service.operator import kopf_tuning

api: Any = importlib.import_module("kopf._cogs.clients.api")  # kopf's HTTP layer, private


def test_watch_events_are_decoded_by_orjson_into_the_same_objects() -> None:
    line = b'{"type":"ADDED","object":{"metadata":{"name":"ls-alice","labels":{"a":"\\u00e9"}},"n":[1,2.5,null]}}'
    expected = json.loads(line)
    original = api.json
    try:
        assert kopf_tuning.decode_watch_events_with_orjson()
        assert kopf_tuning.decode_watch_events_with_orjson()  # idempotent

        assert api.json.loads is orjson.loads
        assert api.json.loads(line.decode("utf-8")) == expected
    finally:
        api.json = original


def test_the_decoder_is_left_alone_when_kopf_no_longer_parses_with_json() -> None:
    original = api.json
    try:
        api.json = object()  # stands for a kopf whose reader changed
        assert not kopf_tuning.decode_watch_events_with_orjson()
    finally:
        api.json = original


def test_the_diff_base_builds_and_stores_nothing() -> None:
    storage = kopf_tuning.NoDiffBase()
    body = kopf.Body({"metadata": {"name": "a"}, "spec": {"username": "alice"}})

    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=kopf.BodyEssence())
    assert not patch
