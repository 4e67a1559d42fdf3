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

The second half holds the failure scenarios' answers (captcha pages, refused handshakes, the
age-restricted room info), each as TikTok sends it, with the source it was taken from.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
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


# -- failure scenarios: what TikTok answers instead of the room (pure; routes apply them) ---------

#: `Handshake-Status` TikTok sends with a refused upgrade, by `Handshake-Msg` (TikTok-Live-Connector
#: issues #184 "illegal secret key" / 417 and #187 "DEVICE_BLOCKED" / 415: `HTTP/1.1 200 OK`,
#: `content-length: 0`, `handshake-msg`, `handshake-status`, `tt_stable: 1`, `x-tt-logid`).
_HANDSHAKE_STATUS: dict[str, str] = {"DEVICE_BLOCKED": "415", "illegal secret key": "417", "illegal app_id": "417"}


def applies(limit: int, seen: int) -> bool:
    """Whether the `seen`-th occurrence (0-based) is still affected by a fault limited to `limit` (-1 = always)."""
    return limit < 0 or seen < limit


def handshake_refusal(status: int, message: str, log_id: str) -> tuple[int, dict[str, str]]:
    """The answer to a WebSocket upgrade TikTok refuses: no 101, the reason in headers, no body."""
    headers = {
        "Handshake-Msg": message,
        "Handshake-Status": _HANDSHAKE_STATUS.get(message, "417"),
        "tt_stable": "1",
        "X-Tt-Logid": log_id,
    }
    return status, headers


def captcha_page(token: str) -> str:
    """TikTok's verify page in place of ``/@user/live``: no SIGI_STATE (TikTok-Api issue #407 shows
    its ``"title":"tiktok-verify-page"`` option script)."""
    option = {"title": "tiktok-verify-page", "iid": "0", "did": "0", "app_name": "tiktok", "aid": 1284}
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>TikTok</title>'
        f"<script>const option = {json.dumps(option)};</script></head>"
        f'<body><div id="captcha-verify-container" data-fp="verify_{token}"></div></body></html>'
    )


def captcha_json(token: str) -> dict[str, str]:
    """TikTok's verify answer in place of an API's JSON (carcabot/tiktok-signature issue #86)."""
    return {
        "code": "10000",
        "from": "",
        "type": "verify",
        "version": "",
        "region": "va",
        "subtype": "slide",
        "detail": token * 4,
        "verify_event": "",
        "fp": f"verify_{token[:8]}_{token[8:16]}",
    }


def has_session(cookies: Mapping[str, str]) -> bool:
    """A logged-in viewer as TikTok tells one: a non-empty ``sessionid`` cookie (TikTokLive's
    ``set_session`` also sets ``sessionid_ss`` and ``sid_tt``, and clears them with "")."""
    return bool(cookies.get("sessionid"))


def room_info(
    room: Mapping[str, object], *, age_restricted: bool, cookies: Mapping[str, str], now_ms: int
) -> dict[str, object]:
    """``/webcast/room/info/``: the room, or for an 18+ LIVE without a session the answer anonymous
    viewers get (TikTokLive issue #228: ``{"data": {"message": "Request params error", "prompts":
    "Request params error"}, "extra": {"now": ...}, "status_code": 10011}``)."""
    if age_restricted and not has_session(cookies):
        prompt = "Request params error"
        return {"data": {"message": prompt, "prompts": prompt}, "extra": {"now": now_ms}, "status_code": 10011}
    return {"data": dict(room), "extra": {"now": now_ms}, "status_code": 0}
