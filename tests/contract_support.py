"""Holds published events to the contract: each envelope against its type's JSON Schema.

`validate_envelope` checks one event (bytes, str or parsed object); `stream_violations`
reads every event stream a test left in Redis and returns what does not validate. The
`redis_url` fixture runs the latter at teardown, so every event any test publishes is
checked; a test that writes invalid entries on purpose opts out with
`@pytest.mark.invalid_events`.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema_rs
import orjson
import redis.asyncio as aioredis

from tiktok_service import schemas
from tiktok_service.domain import naming
from tiktok_service.domain.events import EVENT_TYPES

#: Streams that hold envelopes: per-type streams and per-livestream streams.
_LIVESTREAM_PATTERN = naming.livestream_stream("*")


class ContractViolation(AssertionError):
    """An event that does not match its schema (the message lists every error)."""


@functools.cache
def _validator(name: str) -> Any:
    return jsonschema_rs.validator_for(schemas.load(name))


def violations(event: bytes | str | dict[str, Any]) -> list[str]:
    """Every way an event breaks the contract (empty when it is valid)."""
    try:
        doc = orjson.loads(event) if isinstance(event, bytes | str) else event
    except orjson.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    kind = doc.get("type")
    name = kind if isinstance(kind, str) and kind in EVENT_TYPES else schemas.ENVELOPE
    errors = [
        f"{'/'.join(map(str, e.instance_path)) or '(root)'}: {e.message}" for e in _validator(name).iter_errors(doc)
    ]
    if name == schemas.ENVELOPE and not errors:
        errors.append(f"unknown type {kind!r}")
    return errors


def validate_envelope(event: bytes | str | dict[str, Any]) -> None:
    """Raise ContractViolation unless `event` is a valid envelope of its type."""
    errors = violations(event)
    if errors:
        raise ContractViolation("event breaks its schema:\n  " + "\n  ".join(errors))


async def stream_violations(redis_url: str) -> list[str]:
    """Validate every entry of every event stream in Redis; the problems found, by stream and entry."""
    client = aioredis.from_url(redis_url)
    problems: list[str] = []
    try:
        names = [n.decode() async for n in client.scan_iter(match=_LIVESTREAM_PATTERN, _type="STREAM")]
        names += [n for n in naming.all_type_streams() if await client.exists(n)]
        for stream in names:
            cursor = "-"
            while True:
                entries = await client.xrange(stream, min=cursor, count=1000)
                for entry_id, fields in entries:
                    raw = fields.get(naming.FIELD_EVENT)
                    errors = ["no event field"] if raw is None else violations(raw)
                    problems += [f"{stream} {entry_id.decode()}: {error}" for error in errors]
                if len(entries) < 1000:
                    break
                cursor = "(" + entries[-1][0].decode()
    finally:
        await client.aclose()
    return problems
