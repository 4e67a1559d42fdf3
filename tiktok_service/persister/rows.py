"""Pure decisions of the persister: stream entry -> `events` row, keys, backoff.

Nothing here does I/O, so every rule about what gets stored (and what is a poison entry)
is unit-tested without Redis or PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import random
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson
from asyncpg.pgproto import pgproto

# The row shape is the table's (shared with the API); named here too for the persister's code.
from tiktok_service.database.events_table import COLUMNS as COLUMNS
from tiktok_service.database.events_table import PAYLOAD as PAYLOAD
from tiktok_service.database.events_table import Cursor as Cursor
from tiktok_service.database.events_table import Record as Record
from tiktok_service.domain import events, naming

#: Namespaces of the deterministic keys. Changing either re-keys every row: never do it.
EVENTS_NAMESPACE: Final = uuid.UUID("6d0f8a52-3f5e-4c1b-9a57-2f1c1d5e8b01")
LIVESTREAMS_NAMESPACE: Final = uuid.UUID("0b8e5a4c-7d1f-4e2a-8c3b-5a9d6e7f1c02")

#: Values of the `type` attribute the fast path accepts (exactly those events.decode accepts).
_TYPE_VALUES: Final = frozenset(t.value for t in events.EventType)
#: Years whose millisecond timestamps survive the full decoder's float round trip exactly
#: (below 2**32 s a float holds seconds to within 0.25 us, so rounding to microseconds
#: restores the millisecond): in them both paths agree to the microsecond.
_FAST_YEARS: Final = range(1970, 2100)
#: Bits a name-based SHA-1 UUID sets over the hash: version 5 and the RFC 4122 variant.
_UUID5_MARK: Final = (0x50 << 72) | (0x80 << 56)
_UUID5_KEEP: Final = ((1 << 128) - 1) ^ ((0xF0 << 72) | (0xC0 << 56))
_BIGINT_MIN: Final = -(2**63)
_BIGINT_MAX: Final = 2**63 - 1
_MAX_SHIFT: Final = 62  # 2**62 * base exceeds any sane cap; avoids float overflow


class PoisonEntry(ValueError):
    """A stream entry that can never be stored; it goes to the dead-letter stream.

    `category` is a small fixed vocabulary (it labels a metric); `reason` is the detail
    written next to the raw entry.
    """

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


def livestream_key(livestream_id: str) -> uuid.UUID:
    """The `events.livestream_id` of an envelope's livestream id.

    Livestream ids are Kubernetes CR uids: canonical lower-case UUIDs, stored as they are,
    so events join `livestreams.id`. Any other string (a dev run's `demo`, a hand-started
    connector) is mapped to uuid5(LIVESTREAMS_NAMESPACE, id) rather than refused: refusing
    would lose real events over a naming detail, and the original string stays in the
    payload. Only the canonical form is taken verbatim, so the mapping is one-to-one on
    strings (`ABC…` and `abc…` do not silently merge). The API must use this function to
    look such livestreams up.
    """
    try:
        parsed = uuid.UUID(livestream_id)
    except ValueError:
        return uuid.uuid5(LIVESTREAMS_NAMESPACE, livestream_id)
    if str(parsed) == livestream_id:
        return parsed
    return uuid.uuid5(LIVESTREAMS_NAMESPACE, livestream_id)


def event_key(livestream: uuid.UUID, event_id: str) -> uuid.UUID:
    """`events.id`: the same event of the same livestream always gets the same key,
    uuid5(EVENTS_NAMESPACE, "<livestream uuid>:<event id>")."""
    return _uuid5(EVENTS_NAMESPACE.bytes + f"{livestream}:".encode(), event_id)


@functools.lru_cache(maxsize=4096)
def _keys_of(livestream_id: str) -> tuple[uuid.UUID, bytes]:
    """Per-livestream part of the keys, cached: the hot path sees few livestreams, many events."""
    livestream = _fast_uuid(livestream_key(livestream_id).bytes)
    return livestream, EVENTS_NAMESPACE.bytes + f"{livestream}:".encode()


def _uuid5(prefix: bytes, name: str) -> uuid.UUID:
    """uuid.uuid5 with the namespace bytes precomputed (same result, a fraction of the cost)."""
    digest = int.from_bytes(hashlib.sha1(prefix + name.encode(), usedforsecurity=False).digest()[:16])
    made: uuid.UUID = pgproto.UUID(((digest & _UUID5_KEEP) | _UUID5_MARK).to_bytes(16))
    return made


def _fast_uuid(value: bytes) -> uuid.UUID:
    """asyncpg's UUID: a `uuid.UUID` subclass (same equality, hash and str) built in C,
    ~15x cheaper than uuid.UUID(bytes=...), and copied to COPY as raw bytes. No I/O here."""
    made: uuid.UUID = pgproto.UUID(value)
    return made


def record_from_fields(fields: Mapping[bytes, bytes]) -> Record:
    """Map one stream entry's fields to a COPY record; raises PoisonEntry if it cannot be."""
    if not fields:
        raise PoisonEntry("entry_deleted", "entry was trimmed from the stream before it was persisted")
    raw = fields.get(naming.FIELD_EVENT)
    if raw is None:
        raise PoisonEntry("missing_event", f"entry has no {naming.FIELD_EVENT.decode()!r} field")
    record = fast_record(raw)
    if record is not None:
        return record
    try:
        envelope = events.decode(raw)
    except events.MalformedEnvelope as exc:
        repaired = without_lone_surrogates(raw) if "surrogate" in str(exc) else None
        if repaired is None:
            raise PoisonEntry("malformed_envelope", str(exc)) from exc
        raw = repaired
        try:
            envelope = events.decode(raw)
        except events.MalformedEnvelope as again:
            raise PoisonEntry("malformed_envelope", str(again)) from again
    try:
        return record_from_envelope(envelope, raw)
    except PoisonEntry:
        raise
    except Exception as exc:  # an entry must never stop the group: whatever it is, it is dead-lettered
        raise PoisonEntry("malformed_envelope", f"cannot be stored: {exc!r}"[:500]) from exc


def fast_record(raw: bytes) -> Record | None:
    """The record of an envelope in the exact shape connectors publish, or None.

    The hot path: one orjson parse, and only the columns are picked out, without building
    an Envelope or round-tripping the time through a float (about half the cost of
    `events.decode` + `record_from_envelope`). Whatever is not plainly well-formed (a
    missing key, a wrong type, an unusual time format, a value PostgreSQL would refuse)
    gives None, and the full decoder then decides, explaining any refusal. So this
    function accepts a subset of what the full path accepts, and returns the very same
    record for it (tests/unit/test_persister_rows.py holds it to that).
    """
    try:
        doc = orjson.loads(raw)
        if doc["specversion"] != events.SPEC_VERSION or doc["schemaversion"] != events.SCHEMA_VERSION:
            return None
        event_id = doc["id"]
        event_type = doc["type"]
        livestream_id = doc["livestreamid"]
        room = doc["roomid"]
        time_text = doc["time"]
        user = doc["data"]["user"]  # subscripting proves `data` an object
        if (
            type(event_id) is not str
            or type(event_type) is not str
            or type(livestream_id) is not str
            or type(room) is not str
            or type(time_text) is not str
            or not event_id
            or not livestream_id
            or event_type not in _TYPE_VALUES
            or "\x00" in event_id
        ):
            return None
        if user:
            username = user["unique_id"]
            raw_user_id = user["id"]
            if (
                type(username) is not str
                or type(raw_user_id) is not str
                or "\x00" in username
                or "nickname" not in user
            ):
                return None
            user_id: int | None = int(raw_user_id)
        else:
            user_id = username = None
        room_id = int(room)
        moment = dt.datetime.fromisoformat(time_text)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if (
        # format_time's shape: UTC, milliseconds, in a year both paths agree on
        len(time_text) != 24
        or time_text[10] != "T"
        or time_text[19] != "."
        or time_text[23] != "Z"
        or moment.microsecond % 1000
        or moment.year not in _FAST_YEARS
        # values PostgreSQL would refuse
        or not _BIGINT_MIN <= room_id <= _BIGINT_MAX
        or (user_id is not None and not _BIGINT_MIN <= user_id <= _BIGINT_MAX)
        # maybe a NUL, which jsonb cannot hold: the full path checks (memchr first: 10x faster)
        or (b"\\" in raw and b"\\u0000" in raw)
    ):
        return None
    livestream, key_prefix = _keys_of(livestream_id)
    return (
        _uuid5(key_prefix, event_id),
        livestream,
        event_id,
        event_type,
        room_id,
        user_id,
        username,
        raw.decode("utf-8"),
        moment,
    )


def record_from_envelope(envelope: events.Envelope, raw: bytes) -> Record:
    """The row of a decoded envelope; `raw` (its published bytes) becomes the payload.

    PostgreSQL cannot store a NUL character (neither in text nor in jsonb), and TikTok users
    can type one: it is stored as U+FFFD (the replacement character) wherever it occurs,
    instead of the event being refused; the stream keeps the original bytes.
    """
    if _has_nul(envelope, raw):
        raw = orjson.dumps(_without_nul(orjson.loads(raw)))
        envelope = events.decode(raw)
    _check_storable(envelope, raw)
    livestream, key_prefix = _keys_of(envelope.livestream_id)
    try:
        moment = dt.datetime.fromtimestamp(envelope.time_ms / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PoisonEntry("unstorable", f"event time {envelope.time_ms} ms is out of range") from exc
    user = envelope.user
    return (
        _uuid5(key_prefix, envelope.id),
        livestream,
        envelope.id,
        envelope.type.value,
        envelope.room_id,
        user.id if user else None,
        user.unique_id if user else None,
        raw.decode("utf-8"),
        moment,
    )


def _check_storable(envelope: events.Envelope, raw: bytes) -> None:
    """Reject what PostgreSQL would reject, so one bad event cannot fail a whole COPY."""
    user = envelope.user
    if not _BIGINT_MIN <= envelope.room_id <= _BIGINT_MAX:
        raise PoisonEntry("unstorable", f"roomid {envelope.room_id} does not fit a bigint")
    if user is not None and not _BIGINT_MIN <= user.id <= _BIGINT_MAX:
        raise PoisonEntry("unstorable", f"user.id {user.id} does not fit a bigint")


#: What a NUL becomes in PostgreSQL: it can store neither "\x00" in text nor \u0000 in jsonb.
NUL_REPLACEMENT = "\ufffd"


def _has_nul(envelope: events.Envelope, raw: bytes) -> bool:
    user = envelope.user
    if "\x00" in envelope.id or (user is not None and "\x00" in user.unique_id):
        return True
    # Cheap pre-filter, exact check only when it fires (an escaped backslash may precede "u0000").
    return b"\\" in raw and b"\\u0000" in raw and _contains_nul(orjson.loads(raw))


def _contains_nul(value: object) -> bool:
    stack = [value]
    while stack:  # bounded: visits each JSON node once
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _without_nul(value: Any) -> Any:
    """`value` (decoded JSON) with every NUL in its strings, keys included, replaced."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def without_lone_surrogates(raw: bytes) -> bytes | None:
    """`raw` with every lone surrogate escape (`\\ud83d` without its pair: an emoji cut in
    half by a client that counts UTF-16 units) replaced by U+FFFD, or None if it is not
    JSON for another reason too.

    JSON allows such escapes; orjson, UTF-8 and PostgreSQL's jsonb do not. The standard
    library's parser accepts them; numbers are kept exactly as written (no float
    round trip), and NaN/Infinity stay refused, so only the broken text changes.
    """
    try:
        doc = json.loads(raw, parse_constant=_refuse_constant, parse_float=_exact_number, parse_int=_exact_number)
        return orjson.dumps(_replace_lone_surrogates(doc), default=_number_text, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
    except (ValueError, RecursionError, TypeError, orjson.JSONEncodeError):
        return None


class _Number(str):
    """A JSON number as written, re-emitted verbatim (see `_number_text`)."""


def _exact_number(text: str) -> _Number:
    return _Number(text)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _number_text(value: object) -> orjson.Fragment:
    if isinstance(value, _Number):
        return orjson.Fragment(str.__str__(value).encode())
    raise TypeError(f"cannot encode {type(value).__name__}")


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: Any) -> Any:
    """`value` (decoded JSON) with lone surrogates in its strings, keys included, replaced.
    (The parser joins valid pairs into one code point, so every surrogate left is lone.)"""
    if isinstance(value, _Number):
        return value
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(NUL_REPLACEMENT, value)
    if isinstance(value, dict):
        return {_replace_lone_surrogates(key): _replace_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    return value


def next_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (0-based): exponential, full jitter.

    Full jitter (uniform in [0, min(cap, base * 2**attempt)]) spreads persisters that failed
    together (a database restart) so they do not reconnect in lock step.
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), _MAX_SHIFT))
    return rng.uniform(0.0, ceiling)
