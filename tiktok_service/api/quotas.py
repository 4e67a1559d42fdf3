"""The tenant boundary's decisions (pure): who is over which quota, and the Redis keys they are counted in.

Counts live in Redis so that every API replica sees the same numbers. Keys are named by a
key's id (a prefix of its SHA-256, never the key) and by workspace, under `tiktok.api.`.
Status codes: a quota that only waiting can lift (an open stream will end, a rate window
will pass) answers 429 with Retry-After; one that needs the client to act (disconnect or
delete a livestream) answers 403, as Kubernetes does for an exceeded ResourceQuota.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from tiktok_service.api import resources
from tiktok_service.domain import naming

PREFIX: Final = naming.API_KEY_PREFIX
RATE_LIMIT_PREFIX: Final = PREFIX + "ratelimit"
#: Answers of the stream lease script.
LEASED: Final = 0
WORKSPACE_FULL: Final = 1
KEY_FULL: Final = 2


def key_id(digest: bytes) -> str:
    """A key's name in counters: the first 128 bits of its SHA-256, in hex (the key itself is never stored)."""
    return digest[:16].hex()


def rate_limit_key(key: str) -> str:
    """What `limits` counts one key's requests under (it adds its own prefix)."""
    return f"key/{key}"


def workspace_streams_key(workspace_id: str) -> str:
    """Sorted set of a workspace's open SSE streams, scored by when their lease expires."""
    return f"{PREFIX}streams.workspace.{workspace_id}"


def key_streams_key(key: str) -> str:
    return f"{PREFIX}streams.key.{key}"


def connect_lock_key(workspace_id: str) -> str:
    """Held by one connect of the workspace at a time, from counting its Livestreams to creating one."""
    return f"{PREFIX}connect.{workspace_id}"


def livestream_name_key(livestream_id: str) -> str:
    """Name of a Livestream the API created, by its uid: found by one GET before the operator's row exists."""
    return f"{PREFIX}livestream.{livestream_id}"


def retry_after_s(reset_at: float, now: float) -> int:
    """Whole seconds until `reset_at` (at least 1: `Retry-After: 0` invites a busy loop)."""
    return max(1, math.ceil(reset_at - now))


def livestream_quota_refusal(livestreams: Iterable[Mapping[str, Any]], name: str, limit: int) -> str | None:
    """Why connecting (or resuming) the Livestream `name` would exceed `limit` active ones; None when it would not.

    Active is what runs a connector pod or soon will: wanted Running and not Stopped, Ended or
    Failed. The Livestream `name` itself needs no new place when it is active already.
    """
    active = 0
    for item in livestreams:
        if resources.name(item) == name and resources.is_active(item):
            return None
        active += resources.is_active(item)
    if active < limit:
        return None
    return (
        f"this workspace has {active} active livestreams, its quota is {limit}: "
        "disconnect or delete one to connect another"
    )


def stream_refusal(answer: int, *, workspace_limit: int, key_limit: int) -> str | None:
    """The 429's words for an answer of the lease script; None when the stream got its lease."""
    if answer == WORKSPACE_FULL:
        return f"this workspace has {workspace_limit} open event streams, its quota; close one or retry later"
    if answer == KEY_FULL:
        return f"this API key has {key_limit} open event streams, its quota; close one or retry later"
    return None
