"""A decoded TikTok message as JSON: the `data` of every kind we do not normalise by hand.

The rules are proto3's JSON mapping, with field names kept in snake case (like the rest of
our envelopes): 64-bit integers as decimal strings (JavaScript cannot hold them), bytes as
base64, enums by name (their number when the library does not know the value), maps with
string keys, and fields at their default value left out. Only message fields are walked:
no library-internal attribute ever reaches the output.

betterproto2's own `to_dict` gives the same shape but re-resolves the type hints of every
message on every call (milliseconds for a battle message); here each class is planned once
from its protobuf field metadata and the plan is cached.
"""

from __future__ import annotations

import base64
import enum
import math
from typing import Any, Final

#: Field names left out at the top level: `common` is header noise (msg_id, room_id and
#: time are the envelope's own attributes), `user` is the envelope's user.
TOP_LEVEL_SKIP: Final = frozenset({"common", "user"})

_INT64: Final = frozenset({"int64", "uint64", "sint64", "fixed64", "sfixed64"})
_FLOAT: Final = frozenset({"float", "double"})

# How a value is written: one code per protobuf scalar family.
_PLAIN, _INT64_STR, _BYTES, _ENUM, _FLOATING, _MESSAGE = range(6)

Plan = tuple[tuple[str, int, bool, int, int], ...]  # (name, kind, repeated, map key kind, map value kind)
_plans: dict[type, Plan] = {}


def _kind(proto_type: str) -> int:
    if proto_type in _INT64:
        return _INT64_STR
    if proto_type == "bytes":
        return _BYTES
    if proto_type == "enum":
        return _ENUM
    if proto_type in _FLOAT:
        return _FLOATING
    if proto_type == "message":
        return _MESSAGE
    return _PLAIN


def _plan(cls: type) -> Plan:
    plan = _plans.get(cls)
    if plan is None:
        meta = cls._betterproto  # type: ignore[attr-defined]
        entries = []
        for name, field in meta.meta_by_field_name.items():
            if field.proto_type == "map" and field.map_meta is not None:
                key_meta, value_meta = field.map_meta
                entries.append((name, -1, False, _kind(key_meta.proto_type), _kind(value_meta.proto_type)))
            else:
                entries.append((name, _kind(field.proto_type), bool(field.repeated), 0, 0))
        plan = _plans[cls] = tuple(entries)
    return plan


def _key(value: Any, kind: int) -> str:
    """A map key as proto3 JSON writes it: always a string (`true`/`false` for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_scalar(value, kind))


def _scalar(value: Any, kind: int) -> Any:
    if kind == _MESSAGE:
        return message_to_json(value)
    if kind == _INT64_STR:
        return str(int(value))
    if kind == _BYTES:
        return base64.b64encode(value).decode()
    if kind == _ENUM:
        return value.name if isinstance(value, enum.Enum) and value.name else int(value)
    if kind == _FLOATING and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def message_to_json(message: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The proto3 JSON object of a decoded betterproto2 message (fields in `skip` left out)."""
    out: dict[str, Any] = {}
    for name, kind, repeated, key_kind, value_kind in _plan(type(message)):
        if name in skip:
            continue
        value = getattr(message, name, None)
        if value is None:
            continue
        key = name.rstrip("_")
        if kind == -1:
            if value:
                out[key] = {_key(k, key_kind): _scalar(v, value_kind) for k, v in value.items()}
        elif repeated:
            if value:
                out[key] = [_scalar(v, kind) for v in value]
        elif kind == _MESSAGE:
            out[key] = message_to_json(value)
        elif value:  # proto3 leaves defaults (0, "", b"", false, enum 0) out
            out[key] = _scalar(value, kind)
    return out
