"""What happens in a simulated room: the :class:`Scenario`, the event vocabulary and the id scheme.

Everything here is pure: no clock, no I/O, no global random state. The same scenario and seed always
produce the same sequence of events, with the same msg_ids and the same users, so a test can compute
what a room *will* send and compare it with what a consumer stored. Wall-clock concerns (rate,
create_time, stalls, drops) live in ``room.py``.

One generated *event* is exactly one TikTok message (one ``BaseProtoMessage`` with its own msg_id).
The generator itself lives in ``timeline.py``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .profiles import avatar_urls, profile_for

# Event kinds a scenario mix may weight.
COMMENT = "comment"
GIFT = "gift"
LIKE = "like"
JOIN = "join"
FOLLOW = "follow"
SHARE = "share"
VIEWER = "viewer"
UNKNOWN = "unknown"
MIX_KINDS: tuple[str, ...] = (COMMENT, GIFT, LIKE, JOIN, FOLLOW, SHARE, VIEWER, UNKNOWN)

# Kinds that never come from the mix.
FIXTURE = "fixture"  # a captured real TikTok payload, replayed as-is
LIVE_END = "live_end"  # WebcastControlMessage action 3, sent by the room when the live ends

# Rarer kinds a mix may also weight; encoded with TikTokLive's own classes (the slow path, see
# ``kinds/``). Sequence kinds open a multi-message story (a whole battle, a poll from start to end)
# whose messages are interleaved with the rest of the traffic.
RICH_SEQUENCE_KINDS: tuple[str, ...] = ("battle", "poll", "subscription", "guest", "goal")
RICH_SINGLE_KINDS: tuple[str, ...] = (
    "emote",
    "barrage",
    "super_fan",
    "question",
    "caption",
    "pin",
    "envelope",
    "gift_broadcast",
    "rank",
    "shopping",
    "im_delete",
)
RICH_MIX_KINDS: tuple[str, ...] = RICH_SEQUENCE_KINDS + RICH_SINGLE_KINDS
EVERY_KIND = "every_kind"  # kind of the messages of the every-kind set (one per mapped method)

# Malformed frame kinds a scenario may inject between regular frames.
MALFORMED_KINDS: tuple[str, ...] = ("bad_gzip", "truncated", "unknown_method", "oversized", "not_pushframe")

METHOD_BY_KIND: dict[str, str] = {
    COMMENT: "WebcastChatMessage",
    GIFT: "WebcastGiftMessage",
    LIKE: "WebcastLikeMessage",
    JOIN: "WebcastMemberMessage",
    FOLLOW: "WebcastSocialMessage",
    SHARE: "WebcastSocialMessage",
    VIEWER: "WebcastRoomUserSeqMessage",
    UNKNOWN: "WebcastFutureShinyMessage",
    LIVE_END: "WebcastControlMessage",
}

DEFAULT_MIX: dict[str, float] = {
    COMMENT: 50.0,
    GIFT: 12.0,
    LIKE: 15.0,
    JOIN: 10.0,
    FOLLOW: 4.0,
    SHARE: 3.0,
    VIEWER: 5.0,
    UNKNOWN: 1.0,
}

# A realistic room: chat and likes stay the bulk; battles, polls, subscriptions, goals, guests and the
# rarer single messages come at rates seen in busy rooms (a sequence weight is per *start*: a battle
# is ~20 messages). About 4% of the messages take the slow path.
REALISTIC_MIX: dict[str, float] = {
    **DEFAULT_MIX,
    "battle": 0.05,
    "poll": 0.05,
    "subscription": 0.1,
    "guest": 0.05,
    "goal": 0.1,
    "emote": 0.5,
    "barrage": 0.2,
    "super_fan": 0.05,
    "question": 0.2,
    "caption": 0.1,
    "pin": 0.05,
    "envelope": 0.1,
    "gift_broadcast": 0.05,
    "rank": 0.3,
    "shopping": 0.1,
    "im_delete": 0.1,
}
MIX_PRESETS: dict[str, dict[str, float]] = {"default": DEFAULT_MIX, "realistic": REALISTIC_MIX}

# msg_id namespaces: generated events use seq 0.., room-made messages use disjoint ranges so that
# ending a live or injecting a malformed frame never shifts the msg_ids of later generated events.
CONTROL_NAMESPACE = 1 << 40
MALFORMED_NAMESPACE = 1 << 41
INJECTED_NAMESPACE = 1 << 42  # messages queued through POST /send


@dataclass
class Scenario:
    """Everything configurable about one simulated room. All fields have working defaults.

    ``None`` for a count means "never"/"unlimited". Counts are in events (= messages) sent by the room.
    """

    seed: int | None = None  # None: derived from the username, so distinct rooms differ
    rate: float = 20.0  # events per second; 0 = as fast as possible
    batch: int = 20  # max messages per WebSocket push frame
    total: int | None = None  # stop sending after this many events (room stays live, idle)
    live_end_after: int | None = None  # send live end (ControlMessage action 3) after N events
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    offline: bool = False  # user exists but is not live (until /live or live_after_s)
    live_after_s: float | None = None  # an offline room goes live by itself after this many seconds
    not_found: bool = False  # user does not exist / cannot go live
    no_room: bool = False  # user exists, but TikTok gives no room id (roomId "" on the live page and in the API)
    sign_429: int = 0  # the first N sign requests are answered 429
    retry_after_s: int = 30  # retry-after advertised with those 429s
    sign_429_retry_after_only: bool = False  # those 429s carry Retry-After but no RateLimit-* headers
    drop_after: int | None = None  # abort every socket (no close frame) after N events...
    drop_repeat: bool = False  # ...once, or again every N events
    stall_after: int | None = None  # stop sending after N events (sockets stay open)...
    stall_s: float = 5.0  # ...for this long (0 = until POST /resume)
    malformed: list[str] = field(default_factory=list)  # malformed frame kinds to inject
    malformed_ratio: float = 0.0  # per regular frame; 0 = inject each listed kind once
    history: int = 6  # recent messages replayed in the sign fetch response
    fixtures: bool = False  # replay the captured real payloads before generated events
    users: int = 200  # size of the deterministic viewer pool
    ack_every: int = 1  # set need_ack on every Nth push frame (0 = never)
    room_id: int | None = None  # None: derived from username and seed
    ping_interval_s: float | None = None  # advertised via Handshake-Options (client heartbeat period)
    sent_log_limit: int = 200_000  # entries kept for GET /sent (oldest are forgotten)
    # Failure scenarios (counts: the first N occurrences are affected; -1 = every one).
    age_restricted: bool = False  # /webcast/room/info/ withholds the room from viewers without a sessionid cookie
    captcha: int = 0  # room lookups (live page, then API) answered by TikTok's verify page
    handshake_blocked: int = 0  # WebSocket upgrades refused: handshake_status + Handshake-Msg, no 101
    handshake_status: int = 200  # TikTok answers 200 (or 400) to a refused upgrade
    handshake_msg: str = "DEVICE_BLOCKED"  # Handshake-Msg of the refusal ("illegal secret key", ...)
    close_code: int | None = None  # close sockets with this code (1000 = cleanly; 4xxx = an application code)...
    close_after: int = 0  # ...once the room has sent this many events on the socket (0 = after the upgrade)...
    closes: int = -1  # ...for this many sockets
    close_reason: str = ""  # the close frame's reason text
    every_kind: bool = False  # start (after fixtures) with one message of every mapped method
    mix_preset: str | None = None  # "realistic" / "default": replaces ``mix`` with that preset

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable message for any nonsensical setting."""
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.batch < 1:
            raise ValueError("batch must be >= 1")
        for name in ("total", "live_end_after", "drop_after", "stall_after"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "total" else 1):
                raise ValueError(f"{name} must be positive")
        unknown = set(self.mix) - set(MIX_KINDS) - set(RICH_MIX_KINDS)
        if unknown:
            raise ValueError(f"unknown mix kinds {sorted(unknown)}; allowed: {list(MIX_KINDS + RICH_MIX_KINDS)}")
        if self.mix_preset is not None and self.mix_preset not in MIX_PRESETS:
            raise ValueError(f"unknown mix_preset {self.mix_preset!r}; allowed: {sorted(MIX_PRESETS)}")
        if any(weight < 0 for weight in self.mix.values()) or not any(self.mix.values()):
            raise ValueError("mix weights must be >= 0 with at least one > 0")
        bad = set(self.malformed) - set(MALFORMED_KINDS)
        if bad:
            raise ValueError(f"unknown malformed kinds {sorted(bad)}; allowed: {list(MALFORMED_KINDS)}")
        if not 0.0 <= self.malformed_ratio <= 1.0:
            raise ValueError("malformed_ratio must be within [0, 1]")
        if self.malformed_ratio > 0 and not self.malformed:
            raise ValueError("malformed_ratio needs a non-empty malformed list")
        if self.history < 0 or self.users < 1 or self.ack_every < 0 or self.sign_429 < 0:
            raise ValueError("history, ack_every and sign_429 must be >= 0; users >= 1")
        if self.sent_log_limit < 1:
            raise ValueError("sent_log_limit must be >= 1")
        if min(self.captcha, self.handshake_blocked, self.closes) < -1 or self.close_after < 0:
            raise ValueError("captcha, handshake_blocked and closes must be >= -1 (-1 = always); close_after >= 0")
        if self.handshake_status in (101, 426) or not 100 <= self.handshake_status <= 599:
            raise ValueError("handshake_status must be an HTTP status that refuses the upgrade (TikTok: 200, 400)")
        if self.close_code is not None and not (
            self.close_code in (1000, 1001, 1011) or 3000 <= self.close_code <= 4999
        ):
            raise ValueError("close_code must be 1000, 1001, 1011 or an application code in 3000-4999")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build from JSON-ish data (control API, scenario files). Unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown scenario fields {sorted(unknown)}; allowed: {sorted(names)}")
        kwargs: dict[str, Any] = dict(data)
        if "mix" in kwargs:
            if not isinstance(kwargs["mix"], Mapping):
                raise ValueError("mix must be an object of kind -> weight")
            kwargs["mix"] = {str(k): float(v) for k, v in kwargs["mix"].items()}
        if "malformed" in kwargs:
            value = kwargs["malformed"]
            kwargs["malformed"] = [value] if isinstance(value, str) else [str(v) for v in value]
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    def effective_mix(self) -> dict[str, float]:
        """The weights the timeline uses: the preset's when ``mix_preset`` is set, else ``mix``."""
        return dict(MIX_PRESETS[self.mix_preset]) if self.mix_preset is not None else self.mix


@dataclass(frozen=True, slots=True)
class SimUser:
    """A viewer. ``unique_id`` is the @handle (TikTok's ``User.display_id``)."""

    id: int
    unique_id: str
    nickname: str
    sec_uid: str
    synthetic: bool = True  # False: read from a captured payload (its avatar/badges are not ours)

    def to_json(self) -> dict[str, Any]:
        """What ``GET /sent`` reports; for simulated viewers ``profile`` is what TikTok's ``User``
        carries beyond names (follow role, levels, badges), identical in every message about them."""
        out: dict[str, Any] = {"id": self.id, "unique_id": self.unique_id, "nickname": self.nickname}
        if self.synthetic:
            out["avatar_url"] = avatar_urls(self.id)[1]
            out["profile"] = profile_for(self.id).to_json()
        return out


@dataclass(frozen=True, slots=True)
class GiftSpec:
    """A gift from TikTok's catalogue. ``type == 1`` means streakable (TikTokLive's rule)."""

    id: int
    name: str
    diamond_count: int
    type: int

    @property
    def streakable(self) -> bool:
        return self.type == 1


GIFT_CATALOGUE: tuple[GiftSpec, ...] = (
    GiftSpec(5655, "Rose", 1, 1),
    GiftSpec(5269, "TikTok", 1, 1),
    GiftSpec(6064, "GG", 1, 1),
    GiftSpec(5827, "Ice Cream Cone", 1, 1),
    GiftSpec(5487, "Finger Heart", 5, 1),
    GiftSpec(5658, "Perfume", 20, 1),
    GiftSpec(5879, "Doughnut", 30, 1),
    GiftSpec(6104, "Cap", 99, 2),
    GiftSpec(5660, "Hand Hearts", 100, 2),
    GiftSpec(11046, "Galaxy", 1000, 2),
    GiftSpec(6369, "Lion", 29999, 2),
    GiftSpec(7312, "TikTok Universe", 44999, 2),
)


@dataclass(slots=True)
class SimEvent:
    """One message of a room's timeline. ``data`` holds the kind-specific fields, already in the
    shape reported by ``GET /sent``; ``raw`` is a pre-encoded payload (captured fixtures only)."""

    seq: int
    msg_id: int
    kind: str
    method: str
    user: SimUser | None
    data: dict[str, Any]
    raw: bytes | None = None
    variant: str | None = None  # every-kind set: which variant of the method (e.g. "pause")

    def to_json(self, create_time: int) -> dict[str, Any]:
        out = {
            "msg_id": self.msg_id,
            "method": self.method,
            "kind": self.kind,
            "user": self.user.to_json() if self.user is not None else None,
            "data": self.data,
            "create_time": create_time,
        }
        if self.variant is not None:
            out["variant"] = self.variant
        return out


_MASK62 = (1 << 62) - 1
_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def derive_msg_id(seed: int, seq: int) -> int:
    """A positive int64 msg_id from (seed, seq), unique per seed for every seq < 2**62.

    Every step (add, xor-shift-right, multiply by an odd constant, all mod 2**62) is a bijection, so
    distinct sequence numbers can never collide; setting bit 62 keeps ids 19 digits long like TikTok's.
    """
    x = (_splitmix64(seed & _MASK64) + seq) & _MASK62
    x ^= x >> 31
    x = (x * 0x7FB5D329728EA185) & _MASK62
    x ^= x >> 27
    x = (x * 0x81DADEF4BC2DD44D) & _MASK62
    x ^= x >> 33
    return (1 << 62) | x


def derive_room_id(username: str, seed: int) -> int:
    """A stable 19-digit room id for a username (TikTok room ids look like 7270193599273683745)."""
    digest = random.Random(f"room:{username}:{seed}").randrange(10**17)
    return 7_200_000_000_000_000_000 + digest


def seed_for_username(username: str) -> int:
    """Default seed: stable across processes (``hash()`` is salted per process, this is not)."""
    return random.Random(f"seed:{username}").randrange(1 << 31)
