"""The event contract as JSON Schema (draft 2020-12): the envelope and the `data` of every type.

This module is the source of truth for what each type's `data` holds. The JSON files in
`tiktok_service/schemas/` are generated from it (`tiktok-service-dev schemas`), and
so are the README's event table and the CRD's list of types; unit tests fail when any of
them is stale, and every event the test suite publishes is validated against its file.

Kinds normalised by hand (comments, gifts...) are described field by field here. Kinds
whose `data` is the decoded TikTok message get their top-level fields from the message's
protobuf description (the caller passes them in, as `ProtoField`s, because the domain does
not import the TikTok library), with the summary fields of first-class kinds on top
(`DERIVED`). Every `data` object is closed (`additionalProperties: false`): a field we
publish and do not describe fails the tests.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tiktok_service.domain.catalogue import KINDS
from tiktok_service.domain.events import EVENT_TYPES, SCHEMA_VERSION, SOURCE_PREFIX, SPEC_VERSION, EventType

E = EventType
Schema = dict[str, Any]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX: Final = "urn:tiktok-service:schema:"

_INT64: Final = frozenset({"int64", "uint64", "sint64", "fixed64", "sfixed64"})
_INT32: Final = frozenset({"int32", "uint32", "sint32", "fixed32", "sfixed32"})


def _d(description: str, schema: Schema) -> Schema:
    return {"description": description, **schema}


ID_STRING: Final[Schema] = {"type": "string", "pattern": "^-?[0-9]+$"}
INT: Final[Schema] = {"type": "integer"}
STR: Final[Schema] = {"type": "string"}
BOOL: Final[Schema] = {"type": "boolean"}
URL: Final[Schema] = {"type": "string"}
USER_REF: Final[Schema] = {"$ref": "#/$defs/user"}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _object(properties: Mapping[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


BADGE: Final = _object(
    {
        "scene": _d("TikTok's badge scene, snake case: admin (moderator), subscriber, rank_list (top gifter), "
                    "user_grade (gifter level), fans (member level), ...; scene_<n> for values we do not name", STR),
        "level": _d("The badge's level, when it has one", INT),
        "text": _d("The badge's text, when it is a text badge", STR),
        "image_url": _d("The badge's image, when it is an image badge", URL),
    },
    ("scene",),
)  # fmt: skip

USER: Final = _object(
    {
        "id": _d("TikTok user id (a decimal string: it exceeds JavaScript's safe integers)", ID_STRING),
        "unique_id": _d("The @handle", STR),
        "nickname": _d("Display name", STR),
        "avatar_url": _d("Avatar (thumbnail) URL", URL),
        "follow_role": _d("Follow status towards the host: 0 none, 1 follows the host, 2 friends", INT),
        "follower_count": _d("Followers of the user", INT),
        "following_count": _d("Accounts the user follows", INT),
        "is_moderator": _d("Has the moderator (admin) badge; only when badges were sent", BOOL),
        "is_subscriber": _d("Has a subscriber badge; only when badges were sent", BOOL),
        "is_top_gifter": _d("Has a top gifter (rank list) badge; only when badges were sent", BOOL),
        "gifter_level": _d("Gifter level (user grade badge, or pay grade)", INT),
        "member_level": _d("Fan club (team member) level", INT),
        "badges": _d("Badges shown next to the name", _array({"$ref": "#/$defs/badge"})),
    },
    ("id", "unique_id", "nickname"),
)

_GIFT_FIELDS: Final[dict[str, Schema]] = {
    "gift_id": _d("Gift id", INT),
    "gift_name": _d("Gift name", STR),
    "diamond_count": _d("Diamonds of one gift", INT),
    "streakable": _d("Whether the gift can be sent in streaks (combo)", BOOL),
    "group_id": _d("Streak group id", INT),
    "gift_image_url": _d("Gift icon URL", URL),
    "to_user": _d("The recipient, when the gift is for someone other than the host (battles, guests)", USER_REF),
    "repeat_count": _d("Gifts in the streak (so far, for progress)", INT),
}

#: `data` fields of the kinds normalised by hand (besides `user`), and which are always there.
CORE: Final[dict[EventType, tuple[dict[str, Schema], tuple[str, ...]]]] = {
    E.COMMENT: (
        {
            "text": _d("The comment", STR),
            "language": _d("Language TikTok detected (e.g. `en`)", STR),
            "emotes": _d(
                "Emotes embedded in the comment",
                _array(
                    _object(
                        {
                            "index": _d("Position in the text", INT),
                            "emote_id": _d("Emote id", STR),
                            "image_url": _d("Emote image", URL),
                        },
                        ("index",),
                    )
                ),
            ),
            "mentions": _d("Users mentioned in the comment", _array(USER_REF)),
            "mention_user_ids": _d("Ids of the users mentioned", _array(ID_STRING)),
            "at_user": _d("The user the comment is addressed to (@reply)", USER_REF),
        },
        ("text",),
    ),
    E.GIFT: (
        {
            **_GIFT_FIELDS,
            "total_diamonds": _d("repeat_count x diamond_count", INT),
            "streak_complete": _d("False when the streak was closed by timeout, live end or shutdown", BOOL),
        },
        ("repeat_count", "total_diamonds", "streak_complete"),
    ),
    E.GIFT_PROGRESS: (_GIFT_FIELDS, ("repeat_count",)),
    E.LIKE: ({"count": _d("Likes in this burst", INT), "total": _d("The room's total likes", INT)}, ("count", "total")),
    E.JOIN: ({"member_count": _d("Viewers in the room after the join", INT)}, ("member_count",)),
    E.FOLLOW: ({"follow_count": _d("The host's follower count", INT)}, ("follow_count",)),
    E.SHARE: (
        {"share_count": _d("Shares", INT), "share_target": _d("Where it was shared to", STR)},
        ("share_count", "share_target"),
    ),
    E.VIEWER: (
        {
            "viewer_count": _d("Viewers now", INT),
            "total_viewers": _d("Viewers since the LIVE started", INT),
            "top_viewers": _d(
                "The room's top viewers (by gifts), as TikTok ranks them",
                _array(
                    _object(
                        {"rank": _d("Rank, 1 first", INT), "score": _d("Score", INT), "user": USER_REF},
                        ("rank", "score"),
                    )
                ),
            ),
        },
        ("viewer_count", "total_viewers"),
    ),
    E.CONNECT: (
        {"username": _d("The @handle connected to", STR), "room_id": _d("Room id", ID_STRING)},
        ("username", "room_id"),
    ),
    E.DISCONNECT: ({"reason": _d("Why the connection closed", STR)}, ("reason",)),
    E.UNKNOWN: (
        {
            "method": _d("TikTok's method name of the message", STR),
            "payload_b64": _d("The protobuf payload, base64, at most its first 4 KiB", STR),
            "payload_size": _d("Size of the whole payload in bytes", INT),
            "truncated": _d("Whether payload_b64 holds less than the whole payload", BOOL),
        },
        ("method", "payload_b64", "payload_size", "truncated"),
    ),
}

_SIDE: Final = _object(
    {
        "anchor_id": _d("The host (side) id", ID_STRING),
        "score": _d("The side's points", INT),
        "result": _d("WIN, LOSE or DRAW, once the battle is over (action FINISH or CUT_SHORT)", STR),
        "supporters": _d(
            "The side's supporters and their points",
            _array(
                _object(
                    {"user_id": ID_STRING, "nickname": STR, "score": _d("Points the user gave", INT)},
                    ("user_id", "nickname", "score"),
                )
            ),
        ),
    },
    ("anchor_id",),
)

#: Summary fields the connector adds to the decoded message of first-class kinds.
DERIVED: Final[dict[EventType, dict[str, Schema]]] = {
    E.BATTLE: {"sides": _d("Each side's score, result and supporters", _array(_SIDE))},
    E.BATTLE_ARMIES: {"sides": _d("Each side's score and supporters", _array(_SIDE))},
    E.LINK_MIC_GUEST: {
        "guest_action": _d(
            "What happened: invite, reply, create, close, enter (joined), leave, cancel, kick_out, "
            "linked_list_change, update_user, waiting_list_change, mute, random_match, ...",
            STR,
        )
    },
    E.POLL: {
        "poll_phase": _d("start, update or end", {"enum": ["start", "update", "end"]}),
        "title": _d("The question asked (at start)", STR),
        "options": _d(
            "The options and their votes so far",
            _array(_object({"index": INT, "text": STR, "votes": INT}, ("index", "text", "votes"))),
        ),
    },
    E.QUESTION: {"question_id": _d("Question id", ID_STRING), "text": _d("The question", STR)},
    E.EMOTE: {"emotes": _d("The emotes sent", _array(_object({"emote_id": STR, "image_url": URL}, ("emote_id",))))},
    E.PIN: {
        "pinned_kind": _d("What was pinned: comment, social, gift, member or like", STR),
        "pinned_text": _d("The pinned comment's text", STR),
        "pinned_user": _d("Who wrote the pinned message", USER_REF),
    },
    E.CAPTION: {"captions": _d("The caption text by language", {"type": "object", "additionalProperties": STR})},
    E.GOAL: {
        "goal_description": _d("The goal's description", STR),
        "sub_goals": _d(
            "Progress of each sub-goal",
            _array(_object({"id": ID_STRING, "progress": INT, "target": INT}, ("id", "progress", "target"))),
        ),
    },
}

#: Decoded kinds whose fields are overridden: control actions keep TikTok's number.
OVERRIDES: Final[dict[EventType, dict[str, Schema]]] = {
    kind: {"action": _d("TikTok's ControlAction: 1 paused, 2 unpaused, 3 ended, 4 suspended by TikTok", INT)}
    for kind in (E.LIVE_END, E.LIVE_PAUSE, E.LIVE_UNPAUSE, E.CONTROL)
}
REQUIRED_OVERRIDES: Final = {E.LIVE_END: ("action",), E.LIVE_PAUSE: ("action",), E.LIVE_UNPAUSE: ("action",)}


@dataclass(frozen=True, slots=True)
class ProtoField:
    """One top-level field of a decoded message, as its protobuf description says."""

    name: str
    proto_type: str
    repeated: bool = False
    map_value_type: str | None = None


def proto_value_schema(proto_type: str) -> Schema:
    """How proto3 JSON writes a value of this protobuf type (see `connector.normalise.proto_json`)."""
    if proto_type in _INT64:
        return dict(ID_STRING)
    if proto_type in _INT32:
        return dict(INT)
    if proto_type == "bool":
        return dict(BOOL)
    if proto_type == "string":
        return dict(STR)
    if proto_type == "bytes":
        return {"type": "string", "contentEncoding": "base64"}
    if proto_type == "enum":
        return {"type": ["string", "integer"]}
    if proto_type in ("float", "double"):
        return {"type": ["number", "string"]}
    return {"type": "object"}


def proto_field_schema(field: ProtoField) -> Schema:
    if field.map_value_type is not None:
        return {"type": "object", "additionalProperties": proto_value_schema(field.map_value_type)}
    value = proto_value_schema(field.proto_type)
    return _array(value) if field.repeated else value


def data_schema(kind: EventType, proto_fields: tuple[ProtoField, ...] | None = None) -> Schema:
    """The `data` object of one type (with `user`); decoded kinds need their message's fields."""
    if kind in CORE:
        fields, required = CORE[kind]
        properties: dict[str, Schema] = dict(fields)
    else:
        if proto_fields is None:
            raise ValueError(f"{kind.value} is a decoded kind: its message's fields are needed")
        properties = {f.name: proto_field_schema(f) for f in proto_fields}
        properties.update(OVERRIDES.get(kind, {}))
        properties.update(DERIVED.get(kind, {}))
        required = REQUIRED_OVERRIDES.get(kind, ())
    user: Schema = {"description": "Who caused the event (null when no user)", "anyOf": [USER_REF, {"type": "null"}]}
    schema = _object({"user": user, **properties}, ("user", *required))
    schema["description"] = KINDS[kind].summary
    return schema


def _envelope(type_schema: Schema, data: Schema, title: str, schema_id: str) -> Schema:
    return {
        "$schema": DIALECT,
        "$id": ID_PREFIX + schema_id,
        "title": title,
        "type": "object",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "datacontenttype",
            "schemaversion",
            "livestreamid",
            "roomid",
            "data",
        ],
        "properties": {
            "specversion": {"const": SPEC_VERSION},
            "id": _d(
                "TikTok's msg_id (or a content hash h..., or connect-/disconnect-<ms>-<n>)", {**STR, "minLength": 1}
            ),
            "source": {"type": "string", "pattern": "^" + SOURCE_PREFIX + ".+$"},
            "type": type_schema,
            "time": _d(
                "RFC 3339 UTC with milliseconds",
                {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"},
            ),
            "datacontenttype": {"const": "application/json"},
            "schemaversion": {"const": SCHEMA_VERSION},
            "livestreamid": {"type": "string", "minLength": 1},
            "roomid": _d("TikTok room id (decimal string; 0 before the room is known)", ID_STRING),
            "data": data,
        },
        "additionalProperties": False,
        "$defs": {"user": copy.deepcopy(USER), "badge": copy.deepcopy(BADGE)},
    }


def envelope_schema() -> Schema:
    """Any event: the envelope, with `data` an object holding `user`."""
    data = {
        "type": "object",
        "required": ["user"],
        "properties": {"user": {"anyOf": [USER_REF, {"type": "null"}]}},
    }
    return _envelope({"enum": sorted(t.value for t in EVENT_TYPES)}, data, "TikTok Service event", "envelope")


def event_schema(kind: EventType, proto_fields: tuple[ProtoField, ...] | None = None) -> Schema:
    """One type's event: the envelope with that `type` and its `data`."""
    return _envelope({"const": kind.value}, data_schema(kind, proto_fields), kind.value, kind.value)
