"""Hand-written protobuf wire-format primitives.

Why not the library's own encoders: TikTokLive's messages are betterproto2 + pydantic dataclasses and
``bytes(msg)`` costs roughly a millisecond per message, which caps a simulator at ~1,000 messages/s.
The simulator must push tens of thousands of messages per second from one core, so it writes the
protobuf wire format directly: a message is just a concatenation of ``tag || value`` pairs, where the
tag is ``(field_number << 3) | wire_type`` as a varint.

Only the two wire types TikTok's messages need are produced: VARINT (ints, bools, enums) and LEN
(strings, bytes, nested messages, map entries). Proto3 semantics are followed: scalar fields equal to
their default (0, "", b"", False) are omitted, because a decoder cannot tell them apart from absent.

The module also has a small, lenient decoder (:func:`iter_fields`) used to read the few frames a client
sends to the server (``im_enter_room``, ``hb``, ``ack``) and to peek into captured payloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

WIRE_VARINT = 0
WIRE_I64 = 1
WIRE_LEN = 2
WIRE_I32 = 5

_UINT64_MASK = (1 << 64) - 1

# Varints below 2**14 are by far the most common values (lengths, small counts): precompute them.
_VARINT_CACHE_LIMIT = 1 << 14


def _encode_varint_slow(value: int) -> bytes:
    if value < 0:
        # int32/int64 negatives are encoded as their 64-bit two's complement (10 bytes).
        value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_VARINT_CACHE: tuple[bytes, ...] = tuple(_encode_varint_slow(i) for i in range(_VARINT_CACHE_LIMIT))


def varint(value: int) -> bytes:
    """Encode ``value`` as a protobuf varint (negative numbers as 64-bit two's complement)."""
    if 0 <= value < _VARINT_CACHE_LIMIT:
        return _VARINT_CACHE[value]
    return _encode_varint_slow(value)


def tag(field_number: int, wire_type: int) -> bytes:
    """The key that precedes every field on the wire."""
    return varint((field_number << 3) | wire_type)


def field_varint(field_number: int, value: int) -> bytes:
    """An int32/int64/uint64/enum field; omitted when 0 (proto3 default)."""
    if not value:
        return b""
    return tag(field_number, WIRE_VARINT) + varint(value)


def field_bool(field_number: int, value: bool) -> bytes:
    """A bool field; omitted when False."""
    return tag(field_number, WIRE_VARINT) + b"\x01" if value else b""


def field_bytes(field_number: int, value: bytes) -> bytes:
    """A bytes field; omitted when empty."""
    if not value:
        return b""
    return tag(field_number, WIRE_LEN) + varint(len(value)) + value


def field_str(field_number: int, value: str) -> bytes:
    """A string field (UTF-8); omitted when empty."""
    if not value:
        return b""
    return field_bytes(field_number, value.encode())


def field_message(field_number: int, body: bytes) -> bytes:
    """An embedded message field. Unlike scalars it is emitted even when empty: present-but-empty
    is distinguishable from absent for optional message fields."""
    return tag(field_number, WIRE_LEN) + varint(len(body)) + body


def length_prefixed(body: bytes) -> bytes:
    """``varint(len) || body`` - the value part of a LEN field, for callers holding a precomputed tag."""
    return varint(len(body)) + body


def map_str_str(field_number: int, items: Iterable[tuple[str, str]]) -> bytes:
    """A ``map<string, string>`` field: one embedded entry message (key=1, value=2) per item."""
    parts = []
    for key, value in items:
        entry = field_str(1, key) + field_str(2, value)
        parts.append(field_message(field_number, entry))
    return b"".join(parts)


class WireError(ValueError):
    """Raised by the decoder on malformed input."""


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)`` for each top-level field of a message.

    VARINT values are returned as unsigned ints, LEN values as bytes, fixed-width values as raw
    little-endian ints. Raises :class:`WireError` on truncated or invalid input.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        field_number, wire_type = key >> 3, key & 7
        if field_number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type == WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == WIRE_LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > end:
                raise WireError("truncated length-delimited field")
            value = buf[pos : pos + length]
            pos += length
        elif wire_type == WIRE_I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire_type == WIRE_I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        yield field_number, wire_type, value


def decode_fields(buf: bytes) -> dict[int, int | bytes]:
    """Decode a flat message into ``{field_number: last value}`` (last one wins, as in protobuf)."""
    return {number: value for number, _, value in iter_fields(buf)}


def to_signed64(value: int) -> int:
    """Interpret an unsigned varint as a signed int64."""
    return value - (1 << 64) if value >= 1 << 63 else value
