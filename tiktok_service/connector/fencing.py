"""One writer per Livestream: the connector's claim (an epoch) and the check every write makes.

Two connectors may run for one Livestream at once: a pod force-deleted while its node is
partitioned keeps running, a replacement overlaps its predecessor. Without a fence both would
publish (doubling what they both receive) and their per-livestream sequences would collide.

The fence is a Redis hash per Livestream (`naming.connector_fence_key`) holding an epoch
counter and the owner of the newest claim:

* a connector **claims** it: `HINCRBY epoch 1` and `owner` = its own token (the pod uid and a
  random part, unique per process). The counter lives in Redis, so it only grows, whoever
  starts connectors and however often the operator restarts; the newest claim wins. The claim
  is made when the connector has something to write: its first publish, once its socket is up
  (a predecessor still running keeps publishing until then, so a hand-over loses nothing; the
  publisher then drops what the predecessor already published), or a status other than
  "connecting" (waiting for a LIVE, retrying, exiting);
* every write of the connector (the publish script, the status heartbeat) runs in a Lua script
  that first **checks** the fence: the write happens only while the fence holds this
  connector's epoch and owner, atomically with the check. Any other holder means a newer
  connector claimed the Livestream: the script writes nothing and answers `fenced`, and the
  connector stops and exits with `ExitCode.FENCED`;
* a fence that is gone (a Redis restart without persistence, a failover that lost it) is taken
  again by the first write that meets it; every other connector then meets an owner that is not
  its own. The owner token breaks the tie when a failover lost the newest claim and the counter
  hands the same epoch out twice.

The heartbeat refreshes the fence's expiry (and the sequence key's), so neither expires while
its connector lives, however long it waits for a LIVE.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiktok_service.connector import metrics
from tiktok_service.connector.redis_client import RedisClient
from tiktok_service.domain import naming

log = logging.getLogger(__name__)

FENCED = b"fenced"

# KEYS: fence hash. ARGV: owner, ttl seconds. Returns the new epoch and the previous owner.
_CLAIM_LUA = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local previous = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {epoch, previous or ''}
"""


def check_lua(key: str, epoch: str, owner: str, ttl: str) -> str:
    """The fence check every writing script starts with (Lua; arguments are KEYS/ARGV expressions).

    Returns `{'fenced', epoch, owner}` of the holder when this writer no longer holds the fence.
    """
    return f"""
local held = redis.call('HMGET', {key}, 'epoch', 'owner')
if not held[1] then
  redis.call('HSET', {key}, 'epoch', {epoch}, 'owner', {owner})
elseif held[1] ~= {epoch} or held[2] ~= {owner} then
  return {{'fenced', held[1], held[2] or ''}}
end
redis.call('EXPIRE', {key}, {ttl})
"""


# KEYS: status hash, fence hash, sequence key. ARGV: epoch, owner, fence ttl, status ttl, then field/value pairs.
_STATUS_LUA = (
    check_lua("KEYS[2]", "ARGV[1]", "ARGV[2]", "ARGV[3]")
    + """
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'ok'}
"""
)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the fence, as a fenced script answered."""

    epoch: int
    owner: str


def holder(reply: Any) -> Holder | None:
    """The holder named by a script's answer if it refused this writer, else None (pure)."""
    if isinstance(reply, list) and reply and reply[0] == FENCED:
        epoch = reply[1] if len(reply) > 1 else b"0"
        owner = reply[2] if len(reply) > 2 else b""
        return Holder(int(epoch or 0), owner.decode() if isinstance(owner, bytes) else str(owner))
    return None


def new_owner(pod_uid: str | None) -> str:
    """This process's owner token: the pod's uid (says which pod holds a Livestream) and a random part."""
    return f"{pod_uid or 'local'}/{secrets.token_hex(6)}"


class Fence:
    """This connector's claim on its Livestream; `lost` once a newer connector claimed it."""

    def __init__(
        self,
        redis: RedisClient,
        livestream_id: str,
        *,
        owner: str,
        ttl_s: int,
        on_lost: Callable[[Holder], None] | None = None,
    ) -> None:
        self.key = naming.connector_fence_key(livestream_id)
        self.livestream_id = livestream_id
        self.owner = owner
        self.ttl_s = ttl_s
        self.epoch: int | None = None
        self.lost: Holder | None = None
        self._on_lost = on_lost
        self._claim = redis.register_script(_CLAIM_LUA)
        self._status = redis.register_script(_STATUS_LUA)
        self._lock = asyncio.Lock()

    async def claim(self) -> int:
        """Take the fence (once per process): every older connector of this Livestream is refused from now on."""
        async with self._lock:
            if self.epoch is None:
                epoch, previous = await self._claim(keys=[self.key], args=[self.owner, self.ttl_s])
                self.epoch = int(epoch)
                metrics.FENCE_EPOCH.set(self.epoch)
                log.info(
                    "claimed the livestream",
                    extra={"epoch": self.epoch, "owner": self.owner, "previous_owner": previous.decode() or None},
                )
            return self.epoch

    def args(self) -> list[str]:
        """The epoch and owner a writing script checks the fence against (claim first)."""
        assert self.epoch is not None, "claim the fence before writing"
        return [str(self.epoch), self.owner]

    def refused(self, by: Holder) -> None:
        """A script refused a write: a newer connector holds the Livestream. Reported once."""
        if self.lost is not None:
            return
        self.lost = by
        metrics.FENCED.inc()
        log.warning(
            "a newer connector claimed this livestream; stopping",
            extra={"epoch": self.epoch, "holder_epoch": by.epoch, "holder": by.owner},
        )
        if self._on_lost is not None:
            self._on_lost(by)

    async def write_status(self, status_key: str, fields: dict[str, Any], ttl_s: int, *, claim: bool) -> bool:
        """Write the status hash if this connector holds the fence; False when refused or not claimed.

        `claim`: take the fence first if this connector has not yet (else write nothing until
        the publisher takes it over, which it does once the socket is up).
        """
        if self.lost is not None or (self.epoch is None and not claim):
            return False
        await self.claim()
        args: list[Any] = [*self.args(), self.ttl_s, ttl_s]
        for name, value in fields.items():
            args += [name, value]
        reply = await self._status(
            keys=[status_key, self.key, naming.publish_seq_key(self.livestream_id)],
            args=args,
        )
        by = holder(reply)
        if by is not None:
            self.refused(by)
            return False
        return True
