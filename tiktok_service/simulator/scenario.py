"""What happens in a simulated room: the :class:`Scenario` and its deterministic event generator.

Everything here is pure: no clock, no I/O, no global random state. The same scenario and seed always
produce the same sequence of events, with the same msg_ids and the same users, so a test can compute
what a room *will* send and compare it with what a consumer stored. Wall-clock concerns (rate,
create_time, stalls, drops) live in ``room.py``.

One generated *event* is exactly one TikTok message (one ``BaseProtoMessage`` with its own msg_id).
A streakable gift therefore spans several events: ``repeat_count`` 1..n with ``repeat_end=0``, then a
final message repeating n with ``repeat_end=1`` and the same ``group_id`` - the shape TikTok uses and the
shape a consumer must collapse to a single gift of n.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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

# msg_id namespaces: generated events use seq 0.., room-made messages use disjoint ranges so that
# ending a live or injecting a malformed frame never shifts the msg_ids of later generated events.
CONTROL_NAMESPACE = 1 << 40
MALFORMED_NAMESPACE = 1 << 41


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
    sign_429: int = 0  # the first N sign requests are answered 429
    retry_after_s: int = 30  # retry-after advertised with those 429s
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
        unknown = set(self.mix) - set(MIX_KINDS)
        if unknown:
            raise ValueError(f"unknown mix kinds {sorted(unknown)}; allowed: {list(MIX_KINDS)}")
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


@dataclass(frozen=True, slots=True)
class SimUser:
    """A viewer. ``unique_id`` is the @handle (TikTok's ``User.display_id``)."""

    id: int
    unique_id: str
    nickname: str
    sec_uid: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "unique_id": self.unique_id, "nickname": self.nickname}


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
_GIFT_WEIGHTS: tuple[float, ...] = (30, 12, 8, 8, 15, 8, 6, 3, 4, 1, 0.3, 0.2)


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

    def to_json(self, create_time: int) -> dict[str, Any]:
        return {
            "msg_id": self.msg_id,
            "method": self.method,
            "kind": self.kind,
            "user": self.user.to_json() if self.user is not None else None,
            "data": self.data,
            "create_time": create_time,
        }


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


_ADJECTIVES = ("happy", "sleepy", "neon", "lucky", "brave", "tiny", "cosmic", "salty", "quiet", "wild")
_NOUNS = ("panda", "otter", "rider", "gamer", "fox", "chef", "pixel", "comet", "bean", "wolf")
_NICK_DECOR = ("", "", "", " ✨", " 🦊", "🌸", " (official)", "_", " 💜", " ツ")
_PHRASES = (
    "hello!",
    "hi from Brazil",
    "first time here",
    "love this stream",
    "what game is this?",
    "lol",
    "W",
    "can you say hi to me?",
    "where are you from?",
    "🔥🔥🔥",
    "😂😂",
    "good morning everyone",
    "gg",
    "that was close",
    "let's goooo",
    "who else is watching at 3am",
    "привет из Москвы",
    "こんにちは",
    "مرحبا بالجميع",
    "안녕하세요!",
    "olá 👋",
    'he said "no way" 😅',
    "it's 'fine'",
    "<b>not bold</b>",
    "'; DROP TABLE events; --",
    "back\\slash and 100% legit",
    "line one\nline two",
    "zero\u200bwidth",
    "👨‍👩‍👧‍👦 family emoji",
)


def make_users(seed: int, count: int) -> tuple[SimUser, ...]:
    """A deterministic pool of viewers with unique ids and handles."""
    rng = random.Random(f"users:{seed}")
    users: list[SimUser] = []
    seen_ids: set[int] = set()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(count):
        user_id = 6_700_000_000_000_000_000 + rng.randrange(10**18)
        while user_id in seen_ids:
            user_id += 1
        seen_ids.add(user_id)
        handle = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}{index}"
        nickname = handle.replace("_", " ").title() + rng.choice(_NICK_DECOR)
        sec_uid = "MS4wLjABAAAA" + "".join(rng.choice(alphabet) for _ in range(52))
        users.append(SimUser(id=user_id, unique_id=handle, nickname=nickname, sec_uid=sec_uid))
    return tuple(users)


@dataclass(slots=True)
class _Streak:
    user: SimUser
    gift: GiftSpec
    group_id: int
    sent: int
    target: int


class EventGenerator:
    """Produces a room's timeline one event at a time. Deterministic for a given (scenario, seed).

    ``prelude`` events (captured fixtures) come first, then generated ones; sequence numbers and
    msg_ids continue across both.
    """

    # Streak behaviour: chance that a step continues an open streak, and how many may be open at once.
    STREAK_CONTINUE_P = 0.3
    MAX_OPEN_STREAKS = 6

    def __init__(self, scenario: Scenario, seed: int, prelude: Sequence[SimEvent] = ()) -> None:
        self.seed = seed
        self.users = make_users(seed, scenario.users)
        self._rng = random.Random(f"events:{seed}")
        kinds = [kind for kind in MIX_KINDS if scenario.mix.get(kind, 0) > 0]
        self._kinds = kinds
        self._kind_cum = _cumulative([scenario.mix[kind] for kind in kinds])
        self._user_cum = _cumulative([1.0 / (i + 1) for i in range(len(self.users))])  # Zipf-like
        self._gift_cum = _cumulative(_GIFT_WEIGHTS)
        self._prelude = list(prelude)
        self.seq = 0
        self._streaks: list[_Streak] = []
        self._group_base = 1_690_000_000_000 + self._rng.randrange(10**10)
        self._groups = 0
        self._viewers = self._rng.randrange(50, 500)
        self._total_user = self._viewers
        self._likes = 0
        self._follows = 0
        self._shares = 0
        self._control_count = 0
        self._builders = {
            COMMENT: self._comment,
            GIFT: self._gift,
            LIKE: self._like,
            JOIN: self._join,
            FOLLOW: self._follow,
            SHARE: self._share,
            VIEWER: self._viewer,
            UNKNOWN: self._unknown,
        }

    def __iter__(self) -> Iterator[SimEvent]:
        while True:
            yield self.next_event()

    def take(self, count: int) -> list[SimEvent]:
        """The next ``count`` events."""
        return [self.next_event() for _ in range(count)]

    def next_event(self) -> SimEvent:
        seq = self.seq
        self.seq += 1
        if seq < len(self._prelude):
            return self._prelude[seq]
        rng = self._rng
        if self._streaks and (len(self._streaks) >= self.MAX_OPEN_STREAKS or rng.random() < self.STREAK_CONTINUE_P):
            return self._continue_streak(seq)
        kind = self._kinds[bisect.bisect_right(self._kind_cum, rng.random() * self._kind_cum[-1])]
        return self._builders[kind](seq)

    def control_event(self, action: int = 3) -> SimEvent:
        """A ControlMessage (live end by default). Uses its own msg_id namespace."""
        msg_id = derive_msg_id(self.seed, CONTROL_NAMESPACE + self._control_count)
        self._control_count += 1
        return SimEvent(-1, msg_id, LIVE_END, METHOD_BY_KIND[LIVE_END], None, {"action": action})

    @property
    def open_streaks(self) -> int:
        return len(self._streaks)

    # -- builders ----------------------------------------------------------------------------------

    def _pick_user(self) -> SimUser:
        cum = self._user_cum
        return self.users[bisect.bisect_right(cum, self._rng.random() * cum[-1])]

    def _event(self, seq: int, kind: str, user: SimUser | None, data: dict[str, Any]) -> SimEvent:
        return SimEvent(seq, derive_msg_id(self.seed, seq), kind, METHOD_BY_KIND[kind], user, data)

    def _comment(self, seq: int) -> SimEvent:
        rng = self._rng
        roll = rng.random()
        if roll < 0.75:
            content = rng.choice(_PHRASES)
        elif roll < 0.97:
            content = f"{rng.choice(_PHRASES)} #{seq}"
        else:
            content = " ".join(rng.choice(_NOUNS) for _ in range(rng.randrange(40, 90)))
        return self._event(seq, COMMENT, self._pick_user(), {"content": content})

    def _gift(self, seq: int) -> SimEvent:
        rng = self._rng
        gift = GIFT_CATALOGUE[bisect.bisect_right(self._gift_cum, rng.random() * self._gift_cum[-1])]
        user = self._pick_user()
        self._groups += 1
        group_id = self._group_base + self._groups
        if not gift.streakable:
            return self._gift_event(seq, user, gift, group_id, 1, 1)
        target = rng.choice((1, 1, 1, 1, 2, 2, 3, 4, 5, 8, 10, 20))
        self._streaks.append(_Streak(user, gift, group_id, 1, target))
        return self._gift_event(seq, user, gift, group_id, 1, 0)

    def _continue_streak(self, seq: int) -> SimEvent:
        streak = self._streaks[self._rng.randrange(len(self._streaks))]
        if streak.sent < streak.target:
            streak.sent += 1
            return self._gift_event(seq, streak.user, streak.gift, streak.group_id, streak.sent, 0)
        self._streaks.remove(streak)
        return self._gift_event(seq, streak.user, streak.gift, streak.group_id, streak.target, 1)

    def _gift_event(
        self, seq: int, user: SimUser, gift: GiftSpec, group_id: int, repeat_count: int, repeat_end: int
    ) -> SimEvent:
        data = {
            "gift_id": gift.id,
            "gift_name": gift.name,
            "diamond_count": gift.diamond_count,
            "gift_type": gift.type,
            "streakable": gift.streakable,
            "repeat_count": repeat_count,
            "repeat_end": repeat_end,
            "combo_count": repeat_count,
            "group_id": group_id,
        }
        return self._event(seq, GIFT, user, data)

    def _like(self, seq: int) -> SimEvent:
        count = self._rng.randrange(1, 16)
        self._likes += count
        return self._event(seq, LIKE, self._pick_user(), {"count": count, "total": self._likes})

    def _join(self, seq: int) -> SimEvent:
        self._viewers += 1
        self._total_user += 1
        data = {"action": 1, "member_count": self._viewers}
        return self._event(seq, JOIN, self._pick_user(), data)

    def _follow(self, seq: int) -> SimEvent:
        self._follows += 1
        return self._event(seq, FOLLOW, self._pick_user(), {"action": 1, "follow_count": self._follows})

    def _share(self, seq: int) -> SimEvent:
        self._shares += 1
        data = {"action": 3, "share_type": 1, "share_count": self._shares}
        return self._event(seq, SHARE, self._pick_user(), data)

    def _viewer(self, seq: int) -> SimEvent:
        change = self._rng.randrange(-max(1, self._viewers // 20), max(2, self._viewers // 15))
        self._viewers = max(1, self._viewers + change)
        self._total_user = max(self._total_user + max(0, change), self._viewers)
        data = {"total": self._viewers, "total_user": self._total_user}
        return self._event(seq, VIEWER, None, data)

    def _unknown(self, seq: int) -> SimEvent:
        return self._event(seq, UNKNOWN, self._pick_user(), {"sparkles": self._rng.randrange(1, 100)})


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def generate(scenario: Scenario, count: int, seed: int | None = None) -> list[SimEvent]:
    """The first ``count`` generated events of a scenario (no fixtures) - handy for tests."""
    resolved = scenario.seed if seed is None else seed
    if resolved is None:
        raise ValueError("a seed is required (scenario.seed or the seed argument)")
    return EventGenerator(scenario, resolved).take(count)
