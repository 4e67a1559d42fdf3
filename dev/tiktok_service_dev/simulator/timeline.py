"""A room's deterministic timeline: the seeded generator of events for a :class:`Scenario`.

Pure: no clock, no I/O, no global random state; the same scenario and seed always give the same
events, msg_ids and users.

A streakable gift spans several events: ``repeat_count`` 1..n with ``repeat_end=0``, then a final
message repeating n with ``repeat_end=1`` and the same ``group_id`` - the shape TikTok uses and the
shape a consumer must collapse into a single gift of n. Streaks interleave with other events.

The rarer kinds (``kinds/``) work the same way: a mix weight on ``battle``, ``poll`` ... opens a
sequence (a whole battle, a poll from start to end) whose messages then interleave with the rest,
one sequence of each kind at a time. With the default mix none of this runs, so its timeline is
exactly what it always was.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .kinds import SEQUENCE_KINDS, SINGLE_KINDS, Draft, Stage, every_kind_drafts
from .kinds.viewers import im_delete
from .scenario import (
    COMMENT,
    CONTROL_NAMESPACE,
    EVERY_KIND,
    FOLLOW,
    GIFT,
    GIFT_CATALOGUE,
    INJECTED_NAMESPACE,
    JOIN,
    LIKE,
    LIVE_END,
    METHOD_BY_KIND,
    MIX_KINDS,
    RICH_MIX_KINDS,
    SHARE,
    UNKNOWN,
    VIEWER,
    GiftSpec,
    Scenario,
    SimEvent,
    SimUser,
    derive_msg_id,
)

_GIFT_WEIGHTS: tuple[float, ...] = (30, 12, 8, 8, 15, 8, 6, 3, 4, 1, 0.3, 0.2)

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


def default_host(seed: int) -> SimUser:
    """The creator of a room when the caller does not name one (pure tests)."""
    rng = random.Random(f"host:{seed}")
    return SimUser(6_900_000_000_000_000_000 + rng.randrange(10**17), f"host{seed}", f"Host {seed}", "MS4wLjABAAAAhost")


def _fixed_clock() -> int:
    return 1_765_000_000_000


class EventGenerator:
    """Produces a room's timeline one event at a time. Deterministic for a given (scenario, seed).

    ``prelude`` events (captured fixtures) come first, then the every-kind set (if the scenario asks
    for it), then generated ones; sequence numbers and msg_ids continue across all three.

    ``host``/``room_id`` make battle, poll, pin ... bodies name the right creator and room;
    ``clock_ms`` supplies the timestamps inside those bodies (a fixed instant by default, the room
    passes the wall clock) - it never influences which events are generated.
    """

    # Streak behaviour: chance that a step continues an open streak, and how many may be open at once.
    STREAK_CONTINUE_P = 0.3
    MAX_OPEN_STREAKS = 6
    # Chance that a step advances one of the open sequences (battle, poll ...): a 20-message battle
    # then spreads over ~250 messages of other traffic.
    SEQUENCE_STEP_P = 0.08

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        prelude: Sequence[SimEvent] = (),
        *,
        host: SimUser | None = None,
        room_id: int = 0,
        clock_ms: Callable[[], int] = _fixed_clock,
    ) -> None:
        self.seed = seed
        self.users = make_users(seed, scenario.users)
        self._rng = random.Random(f"events:{seed}")
        self.host = host or default_host(seed)
        self.stage = Stage(self._rng, self.users, self.host, room_id, clock_ms)
        mix = scenario.effective_mix()
        kinds = [kind for kind in MIX_KINDS + RICH_MIX_KINDS if mix.get(kind, 0) > 0]
        self._kinds = kinds
        self._kind_cum = _cumulative([mix[kind] for kind in kinds])
        self._user_cum = _cumulative([1.0 / (i + 1) for i in range(len(self.users))])  # Zipf-like
        self._gift_cum = _cumulative(_GIFT_WEIGHTS)
        self._prelude = list(prelude)
        if scenario.every_kind:
            self._prelude.extend(self._every_kind_events(len(self._prelude), lambda i: derive_msg_id(seed, i)))
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
        self._injected_count = 0
        self._sequences: list[tuple[str, Iterator[Draft]]] = []
        self._recent_comments: deque[tuple[int, SimUser]] = deque(maxlen=50)
        self._builders: dict[str, Callable[[int], SimEvent]] = {
            COMMENT: self._comment,
            GIFT: self._gift,
            LIKE: self._like,
            JOIN: self._join,
            FOLLOW: self._follow,
            SHARE: self._share,
            VIEWER: self._viewer,
            UNKNOWN: self._unknown,
        }
        for name in SEQUENCE_KINDS:
            self._builders[name] = self._sequence_builder(name)
        for name in SINGLE_KINDS:
            self._builders[name] = self._single_builder(name)
        self._builders["im_delete"] = self._im_delete

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
        if self._sequences and rng.random() < self.SEQUENCE_STEP_P:
            event = self._continue_sequence(seq)
            if event is not None:
                return event
        kind = self._kinds[bisect.bisect_right(self._kind_cum, rng.random() * self._kind_cum[-1])]
        return self._builders[kind](seq)

    def injected_events(self, methods: Sequence[str] | None = None) -> list[SimEvent]:
        """The every-kind set (or its messages with the given methods) for ``POST /send``. Ids come
        from their own namespace, so the generated timeline is not shifted; a filtered set keeps the
        ids its messages have in the full set (the ImDelete still names the set's chat message)."""
        base = self._injected_count
        # Its own RNG: sending the set at some moment must not change what the timeline generates next.
        stage = Stage(
            random.Random(f"injected:{self.seed}:{base}"), self.users, self.host, self.stage.room_id, self.stage.clock
        )
        events = self._every_kind_events(0, lambda i: derive_msg_id(self.seed, INJECTED_NAMESPACE + base + i), stage)
        self._injected_count += len(events)
        for event in events:
            event.seq = -1  # not part of the generated timeline
        if methods is None:
            return events
        wanted = set(methods)
        return [event for event in events if event.method in wanted]

    def _every_kind_events(
        self, first_seq: int, msg_id_of: Callable[[int], int], stage: Stage | None = None
    ) -> list[SimEvent]:
        drafts = every_kind_drafts(stage or self.stage, lambda i: msg_id_of(first_seq + i))
        return [
            SimEvent(first_seq + i, msg_id_of(first_seq + i), EVERY_KIND, d.method, d.user, d.body, variant=variant)
            for i, (variant, d) in enumerate(drafts)
        ]

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
        event = self._event(seq, COMMENT, self._pick_user(), {"content": content})
        if event.user is not None:
            self._recent_comments.append((event.msg_id, event.user))
        return event

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

    def _from_draft(self, seq: int, kind: str, draft: Draft) -> SimEvent:
        return SimEvent(seq, derive_msg_id(self.seed, seq), kind, draft.method, draft.user, draft.body)

    def _sequence_builder(self, name: str) -> Callable[[int], SimEvent]:
        def start(seq: int) -> SimEvent:
            if any(open_name == name for open_name, _ in self._sequences):
                return self._comment(seq)  # one battle (poll ...) at a time, as in a real room
            steps = SEQUENCE_KINDS[name](self.stage)
            self._sequences.append((name, steps))
            return self._from_draft(seq, name, next(steps))

        return start

    def _continue_sequence(self, seq: int) -> SimEvent | None:
        index = self._rng.randrange(len(self._sequences))
        name, steps = self._sequences[index]
        draft = next(steps, None)
        if draft is None:
            del self._sequences[index]
            return None
        return self._from_draft(seq, name, draft)

    def _single_builder(self, name: str) -> Callable[[int], SimEvent]:
        sample = SINGLE_KINDS[name]
        return lambda seq: self._from_draft(seq, name, sample(self.stage))

    def _im_delete(self, seq: int) -> SimEvent:
        """A moderator deletes a recent comment (the msg_id of a chat message this room sent)."""
        if not self._recent_comments:
            return self._comment(seq)
        msg_id, user = self._recent_comments[self._rng.randrange(len(self._recent_comments))]
        return self._from_draft(seq, "im_delete", im_delete(self.stage, [msg_id], user))

    @property
    def open_sequences(self) -> list[str]:
        return [name for name, _ in self._sequences]

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
