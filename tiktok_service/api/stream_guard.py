"""Open SSE streams inside the tenant boundary: stream quotas, and streams whose key is revoked end.

Quotas: each open stream holds a lease in two Redis sorted sets (its workspace's and its
key's), scored by when the lease expires; one script drops expired leases, checks both
counts and adds the new one, so two replicas never both take the last place. The process
renews its leases every third of `stream_lease_s`, so the streams of a replica that died
stop counting within `stream_lease_s`.

Revocation: a key is checked once, when the stream opens; afterwards every `key_recheck_s`
one query asks PostgreSQL which of the keys of this process's open streams are still live,
and the streams of the others end with `event: end` (`{"reason": "revoked"}`), so a revoked
key stops reading within seconds instead of for as long as it keeps its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import asyncpg
import redis.asyncio as aioredis
from fastapi import status
from fastapi.sse import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

from tiktok_service.api import errors, quotas, repository, sse
from tiktok_service.api.metrics import ApiMetrics

log = logging.getLogger(__name__)

REVOKED: Final = "revoked"
_RELEASE_TIMEOUT_S: Final = 2.0

#: KEYS: workspace set, key set. ARGV: now (ms), lease expiry (ms), member, workspace limit, key limit, ttl (ms).
_LEASE_SCRIPT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 0
"""


@dataclass(eq=False)
class Ticket:
    """One open stream: its place in the quotas, and what ends it when its key is revoked."""

    workspace_id: str
    key_digest: bytes
    member: str = field(default_factory=lambda: uuid.uuid4().hex)
    revoked: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def keys(self) -> list[str]:
        return [
            quotas.workspace_streams_key(self.workspace_id),
            quotas.key_streams_key(quotas.key_id(self.key_digest)),
        ]


class StreamGuard:
    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        *,
        workspace_limit: int,
        key_limit: int,
        lease_s: float,
        recheck_s: float,
        metrics: ApiMetrics,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self.workspace_limit, self.key_limit = workspace_limit, key_limit
        self._lease_s, self._recheck_s = lease_s, recheck_s
        self._metrics = metrics
        self._lease = redis.register_script(_LEASE_SCRIPT)
        self._open: set[Ticket] = set()

    async def admit(self, workspace_id: str, key_digest: bytes) -> Ticket:
        """A lease for one more stream of this workspace and key; `errors.Refusal` (429) when one is full."""
        ticket = Ticket(workspace_id, key_digest)
        now_ms = int(time.time() * 1000)
        lease_ms = int(self._lease_s * 1000)
        args: list[int | str] = [
            now_ms,
            now_ms + lease_ms,
            ticket.member,
            self.workspace_limit,
            self.key_limit,
            lease_ms,
        ]
        answer = int(await self._lease(keys=ticket.keys, args=args))
        refusal = quotas.stream_refusal(answer, workspace_limit=self.workspace_limit, key_limit=self.key_limit)
        if refusal is not None:
            raise errors.Refusal(
                status.HTTP_429_TOO_MANY_REQUESTS, errors.STREAM_QUOTA, refusal, retry_after_s=int(self._recheck_s) + 1
            )
        self._open.add(ticket)
        return ticket

    async def release(self, ticket: Ticket) -> None:
        """Give the stream's place back (shielded: it runs while the request is being cancelled too)."""
        if ticket not in self._open:
            return
        self._open.discard(ticket)
        with anyio.move_on_after(_RELEASE_TIMEOUT_S, shield=True):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in ticket.keys:
                        pipe.zrem(key, ticket.member)
                    await pipe.execute()
            except errors.UNAVAILABLE_ERRORS as exc:  # its lease expires on its own
                log.warning("could not release a stream lease", extra={"error": repr(exc)})

    @property
    def open_streams(self) -> int:
        return len(self._open)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[StreamGuard]:
        """Renews the leases and re-checks the keys of open streams while the block runs."""
        task = asyncio.create_task(self._watch(), name="stream guard")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self._recheck_s)
            try:
                await self.recheck_keys()
                if time.monotonic() - renewed >= self._lease_s / 3:
                    await self.renew()
                    renewed = time.monotonic()
            except errors.UNAVAILABLE_ERRORS as exc:  # streams go on; the next round tries again
                log.warning("could not check open streams", extra={"error": repr(exc)})

    async def recheck_keys(self) -> None:
        """End the streams whose key is no longer live (revoked, or deleted)."""
        open_tickets = [ticket for ticket in self._open if not ticket.revoked.is_set()]
        if not open_tickets:
            return
        async with self._pool.acquire() as conn:
            live = await repository.live_keys(conn, {ticket.key_digest for ticket in open_tickets})
        for ticket in open_tickets:
            if ticket.key_digest not in live:
                self._metrics.sse_revoked.inc()
                ticket.revoked.set()

    async def renew(self) -> None:
        tickets = list(self._open)
        if not tickets:
            return
        expiry = int((time.time() + self._lease_s) * 1000)
        lease_ms = int(self._lease_s * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for ticket in tickets:
                for key in ticket.keys:
                    pipe.zadd(key, {ticket.member: expiry})
                    pipe.pexpire(key, lease_ms)
            await pipe.execute()


class GuardedEventStream(EventSourceResponse):
    """An SSE response that holds its ticket: released when the stream ends, ended when the key is revoked.

    Revocation cancels the stream where it waits (no per-event cost) and sends a last
    `event: end` with reason `revoked`, so EventSource clients stop instead of reconnecting.
    """

    def __init__(self, content: Any, *, guard: StreamGuard, ticket: Ticket, headers: dict[str, str]) -> None:
        super().__init__(content, headers=headers)
        self.guard, self.ticket = guard, ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = finished = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            with anyio.CancelScope() as stream_scope:
                revoked = asyncio.ensure_future(self.ticket.revoked.wait())

                def end(_: asyncio.Future[Any]) -> None:
                    stream_scope.cancel()

                revoked.add_done_callback(end)
                try:
                    await super().__call__(scope, receive, tracked)
                finally:
                    revoked.remove_done_callback(end)
                    revoked.cancel()
            if self.ticket.revoked.is_set() and not finished:
                await self._end_revoked(send, started=started)
        finally:
            await self.guard.release(self.ticket)

    @staticmethod
    async def _end_revoked(send: Send, *, started: bool) -> None:
        if not started:
            response = errors.answer(status.HTTP_401_UNAUTHORIZED, REVOKED, "the API key was revoked")
            await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
            await send({"type": "http.response.body", "body": response.body, "more_body": False})
            return
        await send({"type": "http.response.body", "body": sse.end_event(REVOKED), "more_body": False})
