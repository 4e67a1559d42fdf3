"""TikTokLive events -> our envelopes (pure functions, no I/O).

common.py      ids, times and users read defensively from decoded messages
core.py        the bulk kinds, field by field (comments, gifts, likes, joins, viewers...)
kinds.py       every other kind: the decoded message plus first-class summary fields
proto_json.py  a decoded message as proto3 JSON
"""

from tiktok_service.connector.normalise.common import (
    Context,
    Normalised,
    display_type,
    event_id,
    event_time_ms,
    user_from,
    user_of,
)
from tiktok_service.connector.normalise.core import (
    UNKNOWN_PAYLOAD_LIMIT,
    comment,
    connection,
    control,
    gift_event,
    gift_progress,
    gift_step,
    join,
    like,
    social,
    unknown,
    viewers,
)
from tiktok_service.connector.normalise.kinds import DERIVERS, classify, decoded
from tiktok_service.connector.normalise.proto_json import message_to_json

__all__ = [
    "DERIVERS",
    "UNKNOWN_PAYLOAD_LIMIT",
    "Context",
    "Normalised",
    "classify",
    "comment",
    "connection",
    "control",
    "decoded",
    "display_type",
    "event_id",
    "event_time_ms",
    "gift_event",
    "gift_progress",
    "gift_step",
    "join",
    "like",
    "message_to_json",
    "social",
    "unknown",
    "user_from",
    "user_of",
    "viewers",
]
