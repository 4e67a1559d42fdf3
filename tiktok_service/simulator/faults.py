"""Malformed WebSocket frames, injected between regular frames to exercise a connector's error paths.

What each kind does to TikTokLive 7.0.1 (verified by the integration tests):

* ``bad_gzip`` - a ``msg`` frame announcing ``compress_type=gzip`` whose payload is not valid gzip.
  The library's frame iterator raises ``zlib.error``, which ends the client's connection task (no
  ``DisconnectEvent``).
* ``truncated`` - a valid frame whose single ``WebcastChatMessage`` payload is cut inside a varint.
  The library logs a parse error and carries on (only a ``WebsocketResponseEvent`` is emitted).
  Note betterproto2 silently accepts most truncations (it slices short strings), so the cut point is
  chosen to make the parse fail.
* ``unknown_method`` - a valid frame carrying a method the library has no class for, with opaque
  bytes as payload. Emitted as ``UnknownEvent``.
* ``oversized`` - a 2 MiB frame (uncompressible). websockets' default ``max_size`` is 1 MiB, so the
  client closes the connection with code 1009; the task ends normally and emits ``DisconnectEvent``.
* ``not_pushframe`` - bytes that are not a ``WebcastPushFrame`` at all (an HTML error page); the
  library's parse raises pydantic's ``ValidationError`` and the connection task ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from .messages import encode_base_message, encode_common, encode_fetch_result, encode_push_frame, gzip_fast
from .wire import field_str, field_varint, tag, varint

OVERSIZED_BYTES = 2 * 1024 * 1024
_UNKNOWN_METHOD = "WebcastMysteryBoxV9Message"
_NOT_A_PUSH_FRAME = b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A frame to send plus what to report about it in ``GET /sent``."""

    kind: str
    frame: bytes
    msg_id: int | None
    method: str | None


@lru_cache(maxsize=1)
def _oversized_blob() -> bytes:
    # Random bytes do not compress, so the frame stays > 1 MiB on the wire. Fixed seed: deterministic.
    return random.Random(0x5EED).randbytes(OVERSIZED_BYTES)


def _msg_frame(messages: list[bytes], *, seq_id: int, log_id: int, now_ms: int, compress: bool) -> bytes:
    fetch_result = encode_fetch_result(messages, cursor=f"t-{now_ms}_r-{seq_id}", now=now_ms)
    payload = gzip_fast(fetch_result) if compress else fetch_result
    return encode_push_frame(
        payload_type="msg",
        payload=payload,
        seq_id=seq_id,
        log_id=log_id,
        headers=[("compress_type", "gzip" if compress else "none")],
    )


def truncated_chat_payload(msg_id: int, room_id: int, now_ms: int) -> bytes:
    """A ``WebcastChatMessage`` cut in the middle of its ``common.msg_id`` varint."""
    common = encode_common("WebcastChatMessage", msg_id, room_id, now_ms)
    full = tag(1, 2) + varint(len(common)) + common + field_str(3, "this comment was cut short")
    # Offset of the msg_id varint: outer tag + length, then method field (tag, len, bytes), then tag 2.
    method_field = field_str(1, "WebcastChatMessage")
    cut = 1 + len(varint(len(common))) + len(method_field) + 1 + 3
    return full[:cut]


def build_malformed(kind: str, *, msg_id: int, room_id: int, seq_id: int, log_id: int, now_ms: int) -> MalformedFrame:
    """Build one malformed frame of ``kind`` (see the module docstring)."""
    if kind == "bad_gzip":
        frame = encode_push_frame(
            payload_type="msg",
            payload=b"\x1f\x8b\x08\x00this is definitely not deflate data",
            seq_id=seq_id,
            log_id=log_id,
            headers=[("compress_type", "gzip")],
        )
        return MalformedFrame(kind, frame, None, None)
    if kind == "truncated":
        payload = truncated_chat_payload(msg_id, room_id, now_ms)
        message = encode_base_message("WebcastChatMessage", payload, msg_id)
        frame = _msg_frame([message], seq_id=seq_id, log_id=log_id, now_ms=now_ms, compress=True)
        return MalformedFrame(kind, frame, msg_id, "WebcastChatMessage")
    if kind == "unknown_method":
        payload = field_varint(1, 0xDEADBEEF) + field_str(2, "opaque") + b"\x9a\x01\x03\xff\xfe\xfd"
        message = encode_base_message(_UNKNOWN_METHOD, payload, msg_id)
        frame = _msg_frame([message], seq_id=seq_id, log_id=log_id, now_ms=now_ms, compress=True)
        return MalformedFrame(kind, frame, msg_id, _UNKNOWN_METHOD)
    if kind == "oversized":
        message = encode_base_message("WebcastOversizedMessage", _oversized_blob(), msg_id)
        frame = _msg_frame([message], seq_id=seq_id, log_id=log_id, now_ms=now_ms, compress=False)
        return MalformedFrame(kind, frame, msg_id, "WebcastOversizedMessage")
    if kind == "not_pushframe":
        return MalformedFrame(kind, _NOT_A_PUSH_FRAME, None, None)
    raise ValueError(f"unknown malformed kind {kind!r}")
