"""The slow path: messages built and encoded with TikTokLive's own generated classes.

A *draft* is a message before the room gives it a msg_id: its TikTok method, the viewer it is about
(reported by ``GET /sent``) and its body as a snake_case dict of the library's field names. The room's
encoder adds ``common.method/msg_id/room_id/create_time`` at send time and encodes with
``Message.from_dict(...)`` + ``bytes(...)`` - about a millisecond per message, which is why the bulk
kinds (chat, likes, ...) keep the hand-written fast path and only the rarer kinds come through here.

A :class:`Stage` is what a sampler may use to invent a message: a seeded RNG, the room's viewers and
host, the room id and a clock supplied by the caller (so everything stays deterministic).
"""

from __future__ import annotations

import importlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import betterproto2

from ..scenario import SimUser
from .shapes import Body

# Every module of TikTokLiveProto v3 that holds a class TikTokLive 7.0.1 maps in EVENT_MAPPINGS; the
# class names equal the method names.
_PROTO_MODULES = (
    "TikTokLiveProto.v3.webcast.model.message",
    "TikTokLiveProto.v3.webcast.im",
    "TikTokLiveProto.v3.webcast.model.game",
    "TikTokLiveProto.v3.webcast.model.gift.model",
    "TikTokLiveProto.v3.webcast.model.message.ext",
    "TikTokLiveProto.v3.webcast.model.message.linkcore",
    "TikTokLiveProto.v3.webcast.model.message.redenvelope",
)


@cache
def message_class(method: str) -> type[betterproto2.Message]:
    """The library's generated class for a TikTok method (``WebcastPollMessage`` -> its class)."""
    for module_name in _PROTO_MODULES:
        cls = getattr(importlib.import_module(module_name), method, None)
        if isinstance(cls, type) and issubclass(cls, betterproto2.Message):
            return cls
    raise KeyError(f"no TikTokLiveProto class for {method}")


def kind_name(method: str) -> str:
    """``WebcastLinkMicArmies`` -> ``link_mic_armies``: a readable name for logs and tables."""
    core = method.removeprefix("Webcast").removesuffix("Message") or method
    return re.sub(r"(?<!^)(?=[A-Z])", "_", core).lower()


@dataclass(frozen=True, slots=True)
class Draft:
    """One message before it has a msg_id. ``body`` includes a partial ``common`` (display text)."""

    method: str
    user: SimUser | None
    body: Body


def encode_body(method: str, body: Body, *, msg_id: int, room_id: int, create_time: int) -> bytes:
    """Complete the ``common`` header and encode with the library's class (the slow path)."""
    header = dict(body.get("common") or {})
    header.update(method=method, msg_id=msg_id, room_id=room_id, create_time=create_time)
    message = message_class(method).from_dict({**body, "common": header})
    return bytes(message)


class Stage:
    """What samplers draw from. Deterministic for a given RNG state, viewer pool and clock."""

    def __init__(
        self,
        rng: random.Random,
        users: tuple[SimUser, ...],
        host: SimUser,
        room_id: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self.rng = rng
        self.users = users
        self.host = host
        self.room_id = room_id
        self.clock = clock_ms

    @property
    def now_ms(self) -> int:
        return self.clock()

    @property
    def now_s(self) -> int:
        return self.clock() // 1000

    def viewer(self) -> SimUser:
        """A viewer, biased towards the most active ones (the head of the pool)."""
        head = max(1, min(len(self.users), 30))
        pool = self.users[:head] if self.rng.random() < 0.7 else self.users
        return self.rng.choice(pool)

    def viewers(self, count: int) -> list[SimUser]:
        """``count`` distinct viewers (fewer if the pool is smaller)."""
        return self.rng.sample(self.users, min(count, len(self.users)))

    def new_id(self) -> int:
        """A fresh 19-digit id (battle, poll, envelope, ... ids look like msg ids on TikTok)."""
        return 7_300_000_000_000_000_000 + self.rng.randrange(10**17)


def other_host(stage: Stage, index: int = 0) -> SimUser:
    """A creator from another room (battle opponent, co-host): stable per (host, index)."""
    rng = random.Random(f"rival:{stage.host.id}:{index}")
    user_id = 6_800_000_000_000_000_000 + rng.randrange(10**17)
    handle = rng.choice(("nova", "kiki", "dj", "mira", "leo", "sasha")) + f"_live{rng.randrange(100, 999)}"
    sec_uid = "MS4wLjABAAAA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123456789") for _ in range(52))
    return SimUser(id=user_id, unique_id=handle, nickname=handle.replace("_", " ").title(), sec_uid=sec_uid)


def other_room_id(stage: Stage, index: int = 0) -> int:
    return 7_200_000_000_000_000_000 + random.Random(f"rival-room:{stage.host.id}:{index}").randrange(10**17)


Sampler = Callable[[Stage], Draft]


def draft(method: str, actor: SimUser | None, /, **body: Any) -> Draft:
    """Shorthand used by the family modules: ``draft("WebcastToastMessage", None, common=..., ...)``."""
    return Draft(method, actor, body)
