"""The consumer contract as an AsyncAPI 3 document: which Redis streams exist and what they carry.

Stream consumers read Redis, not our REST API, so their contract is the streams themselves:
one stream per event type across all rooms, one stream per Livestream, and the dead-letter
stream. Each stream entry has three fields — `type`, `id` and `event` — where `event` is
the CloudEvents envelope as JSON, described by the JSON Schema of its type (shipped as
package data in `tiktok_service/schemas`, referenced here by relative path).

The document is generated from the same catalogue as the schemas (`docs/asyncapi.yaml`,
written by `tiktok-service-dev schemas`; a unit test fails when it is stale), so a
new event type can never be published without being described.
"""

from __future__ import annotations

from typing import Any

import yaml

from tiktok_service.connector import contract
from tiktok_service.domain import naming
from tiktok_service.domain.catalogue import KINDS
from tiktok_service.domain.events import EventType

#: Where the document lives, relative to the repository root; schema references are
#: relative to it.
DOCUMENT_PATH = "docs/asyncapi.yaml"
SCHEMA_DIR = "../tiktok_service/schemas"

ENTRY_FIELDS_NOTE = (
    "A Redis stream entry with three fields: `type` (the CloudEvents type, for filtering "
    "without parsing), `id` (the event id, for de-duplication) and `event` (this payload "
    "as UTF-8 JSON)."
)


def _key(kind: EventType) -> str:
    """A component key for a type: `tiktok.link_mic.guest` -> `tiktok_link_mic_guest`."""
    return kind.value.replace(".", "_")


def _entry_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The stream entry's fields besides `event` (which holds the payload).",
        "required": ["type", "id"],
        "properties": {
            "type": {"type": "string", "description": "The CloudEvents `type` of the payload."},
            "id": {"type": "string", "description": "The CloudEvents `id` of the payload."},
        },
    }


def _message(kind: EventType) -> dict[str, Any]:
    return {
        "name": kind.value,
        "title": kind.value,
        "summary": KINDS[kind].summary,
        "description": ENTRY_FIELDS_NOTE,
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/entryFields"},
        "payload": {"$ref": f"{SCHEMA_DIR}/{contract.file_name(kind)}"},
    }


def _channels() -> dict[str, Any]:
    channels: dict[str, Any] = {
        "livestream": {
            "address": naming.livestream_stream("{livestreamId}"),
            "title": "One Livestream's events, in order",
            "description": (
                "Every event of one Livestream in the order the connector published it (the REST "
                "API's SSE endpoint reads this stream). Trimmed to the Livestream's resume window."
            ),
            "parameters": {"livestreamId": {"description": "The Livestream's id (a UUID)."}},
            "messages": {"event": {"$ref": "#/components/messages/event"}},
        },
        "deadletter": {
            "address": naming.DEAD_LETTER_STREAM,
            "title": "Entries the persister could not store",
            "description": (
                "A copy of every entry the persister could not decode or store, with the reason; "
                "the original entry is acknowledged only together with this copy."
            ),
            "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
        },
    }
    for kind in KINDS:
        channels[_key(kind)] = {
            "address": naming.type_stream(kind),
            "title": f"Every {kind.value} event across all rooms",
            "messages": {_key(kind): {"$ref": f"#/components/messages/{_key(kind)}"}},
        }
    return channels


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {
        "receiveLivestream": {
            "action": "receive",
            "channel": {"$ref": "#/channels/livestream"},
            "summary": "Follow one Livestream (XREAD from an id, or a consumer group).",
        },
        "receiveDeadLetters": {
            "action": "receive",
            "channel": {"$ref": "#/channels/deadletter"},
            "summary": "Inspect or replay what could not be stored.",
        },
    }
    for kind in KINDS:
        operations[f"receive_{_key(kind)}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{_key(kind)}"},
            "summary": f"Consume {kind.value} with a consumer group of your own (XREADGROUP, XACK).",
        }
    return operations


def _dead_letter_message() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "name": "deadLetter",
        "title": "Dead letter",
        "summary": "An entry the persister could not store, with why.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "description": "The dead-letter entry's fields.",
            "required": ["stream", "entry_id", "category", "reason", "raw"],
            "properties": {
                "stream": {**text, "description": "The stream the entry came from."},
                "entry_id": {**text, "description": "Its entry id there."},
                "category": {**text, "description": "Why, as a stable word (the dead-letter counter's label)."},
                "reason": {**text, "description": "Why, for a human."},
                "consumer": {**text, "description": "The persister that wrote it."},
                "raw": {**text, "description": "The original entry's fields as JSON."},
            },
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the event streams."""
    messages: dict[str, Any] = {
        "event": {
            "name": "event",
            "title": "Any event",
            "summary": "An event of any type (the envelope; `data` depends on `type`).",
            "description": ENTRY_FIELDS_NOTE,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/entryFields"},
            "payload": {"$ref": f"{SCHEMA_DIR}/{contract.ENVELOPE_FILE}"},
        },
        "deadLetter": _dead_letter_message(),
    }
    messages.update({_key(kind): _message(kind) for kind in KINDS})
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "TikTok Service event streams",
            "version": "1",
            "description": (
                "TikTok LIVE events as CloudEvents 1.0 JSON in Redis Streams. Delivery is at least "
                "once: a consumer group re-delivers what was read but not acknowledged, so consumers "
                'de-duplicate by the event `id`. See README "Consuming the streams".'
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "redis:6379",
                "protocol": "redis",
                "description": "The Redis the connectors publish to (REDIS_URL of the deployment).",
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {"schemas": {"entryFields": _entry_headers()}, "messages": messages},
    }


def render() -> str:
    header = "# Generated by `tiktok-service-dev schemas` from the event catalogue; do not edit.\n"
    body: str = yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)
    return header + body
