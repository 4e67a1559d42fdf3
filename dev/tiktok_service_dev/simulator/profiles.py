"""What a viewer looks like on TikTok LIVE beyond id and name: follow role, levels and badges.

TikTok attaches these to every ``User`` it sends (see the captured 2023 payloads: a ``follow_info`` with
``follow_status`` 0/1/2, a ``USER_GRADE`` badge whose ``privilege_log_extra.level`` is the gifter level,
``SUBSCRIBER`` badges, ...). A simulated viewer keeps the same profile in every message, so the profile
is a pure function of the user id: a consumer comparing its stored user with ``GET /sent`` sees the
same values whichever message carried them.

Proportions are rough but plausible for a mid-size room: most viewers follow nobody special and carry a
low gifter level; a few are subscribers, fans club members or moderators; three hold a top-gifter rank.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# ``follow_info.follow_status`` as TikTok sends it (the Node connector calls it ``followRole``).
FOLLOW_NONE = 0
FOLLOWER = 1
FRIEND = 2  # mutual follow


@dataclass(frozen=True, slots=True)
class UserProfile:
    follow_status: int
    follower_count: int
    following_count: int
    gifter_level: int  # 0: no USER_GRADE badge
    fans_level: int  # fans club ("team") level; 0: not a member
    subscriber: bool
    moderator: bool
    top_gifter_rank: int  # 1..3 on the room's top-gifter list; 0: not on it

    def to_json(self) -> dict[str, Any]:
        return {
            "follow_status": self.follow_status,
            "follower_count": self.follower_count,
            "following_count": self.following_count,
            "gifter_level": self.gifter_level,
            "fans_level": self.fans_level,
            "subscriber": self.subscriber,
            "moderator": self.moderator,
            "top_gifter_rank": self.top_gifter_rank,
        }


def avatar_urls(user_id: int) -> list[str]:
    """The three avatar variants TikTok lists (72x72 webp, 100x100 webp, 100x100 jpeg)."""
    base = f"https://p16-sign-va.tiktokcdn.com/sim-avatar/{user_id}"
    return [f"{base}~tplv-tiktok-shrink:72:72.webp", f"{base}~c5_100x100.webp", f"{base}~c5_100x100.jpeg"]


@lru_cache(maxsize=1 << 16)
def profile_for(user_id: int) -> UserProfile:
    """The stable profile of a viewer (pure: depends on the id only)."""
    rng = random.Random(f"profile:{user_id}")
    roll = rng.random()
    follow_status = FRIEND if roll < 0.1 else FOLLOWER if roll < 0.45 else FOLLOW_NONE
    gifter_level = 0 if rng.random() < 0.35 else min(50, 1 + int(rng.expovariate(1 / 9)))
    fans_level = rng.randrange(1, 30) if rng.random() < 0.12 else 0
    subscriber = rng.random() < 0.08
    moderator = rng.random() < 0.03
    top_gifter_rank = rng.randrange(1, 4) if rng.random() < 0.03 else 0
    return UserProfile(
        follow_status=follow_status,
        follower_count=int(rng.paretovariate(1.2) * 40),
        following_count=rng.randrange(0, 3000),
        gifter_level=gifter_level,
        fans_level=fans_level,
        subscriber=subscriber,
        moderator=moderator,
        top_gifter_rank=top_gifter_rank,
    )
