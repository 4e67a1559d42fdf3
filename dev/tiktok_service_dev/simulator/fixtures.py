"""Replay of real captured TikTok payloads.

The generated traffic is what *we* think TikTok sends; these five payloads are what TikTok really sent
in August 2023. TikTok's schema has drifted since, so parsed with TikTokLive 7's classes some fields
decode empty or with the wrong shape (``LikeMessage.bin`` is in fact a member message: its ``count``
decodes as a list). They are replayed byte-for-byte, under the method named in the capture's README, so
a connector has to survive them. Their ``common.room_id`` is the original 2023 room, not the simulated
one - also something a connector must not trust blindly.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from ._captured import CAPTURED_BASE64
from .scenario import FIXTURE, SimEvent, SimUser
from .wire import WireError, decode_fields, to_signed64

# File -> TikTok method, as in the capture's README table.
CAPTURED_METHODS: dict[str, str] = {
    "MessageWebcastChatMessage.bin": "WebcastChatMessage",
    "MessageWebcastGiftMessage.bin": "WebcastGiftMessage",
    "LikeMessage.bin": "WebcastLikeMessage",
    "MessageWebcastSocialMessage.bin": "WebcastSocialMessage",
    "WebcastMemberMessage.bin": "WebcastMemberMessage",
}

# Field number of ``user`` in each message type (TikTokLive 7 / TikTokLiveProto v3).
_USER_FIELD: dict[str, int] = {
    "WebcastChatMessage": 2,
    "WebcastGiftMessage": 7,
    "WebcastLikeMessage": 5,
    "WebcastSocialMessage": 2,
    "WebcastMemberMessage": 2,
}


@dataclass(frozen=True, slots=True)
class CapturedPayload:
    """One captured message: its file name, the TikTok method it is sent as, the raw protobuf."""

    file: str
    method: str
    payload: bytes


def load_captured(directory: str | Path | None = None) -> tuple[CapturedPayload, ...]:
    """The five captured payloads, from ``directory`` (base64 files) or the embedded copy."""
    out = []
    for file, method in CAPTURED_METHODS.items():
        text = CAPTURED_BASE64[file] if directory is None else (Path(directory) / file).read_text()
        out.append(CapturedPayload(file, method, base64.b64decode("".join(text.split()))))
    return tuple(out)


def _peek(payload: bytes, method: str) -> tuple[int, SimUser | None, int]:
    """Best-effort (msg_id, user, create_time) read with our own decoder, following the library's
    field numbers. Anything that does not decode is reported as missing, never guessed."""
    msg_id, create_time, user = 0, 0, None
    try:
        fields = decode_fields(payload)
        common = fields.get(1)
        if isinstance(common, bytes):
            common_fields = decode_fields(common)
            raw_id = common_fields.get(2)
            raw_time = common_fields.get(4)
            msg_id = to_signed64(raw_id) if isinstance(raw_id, int) else 0
            create_time = raw_time if isinstance(raw_time, int) else 0
        user_raw = fields.get(_USER_FIELD[method])
        if isinstance(user_raw, bytes):
            u = decode_fields(user_raw)
            uid, nick, handle = u.get(1), u.get(3), u.get(38)
            if isinstance(uid, int) and isinstance(nick, bytes) and isinstance(handle, bytes):
                user = SimUser(uid, handle.decode(errors="replace"), nick.decode(errors="replace"), "", synthetic=False)
    except WireError:
        pass
    return msg_id, user, create_time


def fixture_events(payloads: tuple[CapturedPayload, ...]) -> list[SimEvent]:
    """Timeline events for the captured payloads, sent first when ``Scenario.fixtures`` is set.

    The outer ``BaseProtoMessage.msg_id`` is the one inside the payload's ``common`` so that a consumer
    deduplicating by either sees one consistent id.
    """
    events = []
    for index, captured in enumerate(payloads):
        msg_id, user, original_time = _peek(captured.payload, captured.method)
        data = {"file": captured.file, "bytes": len(captured.payload), "original_create_time": original_time}
        events.append(SimEvent(index, msg_id, FIXTURE, captured.method, user, data, raw=captured.payload))
    return events
