"""Each component's Redis ACL user, set from the rules `domain.access` renders.

`ACL SETUSER <user> reset ...` replaces the whole user in one command, so running the setup
again is harmless and leaves exactly the rules of the code that ran it. Users set this way
live in memory: a Redis started with an `aclfile` keeps them across restarts once we
`ACL SAVE`; without one they are gone after a restart (we say so, loudly), and the setup has
to run again -- which is why it belongs in the deployment's setup Job, not in a person's shell.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tiktok_service.domain import access

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RedisSetup:
    users: list[str]
    saved: bool  # False: Redis has no ACL file; the users are lost on restart


def server_version(info: Mapping[str, object]) -> tuple[int, int]:
    """(major, minor) of `INFO server`'s `redis_version` ("7.0.15" -> (7, 0))."""
    major, minor, *_ = [*str(info.get("redis_version", "0.0")).split("."), "0"]
    return int(major), int(minor)


async def apply_redis_users(admin_url: str, passwords: Mapping[access.Role, str]) -> RedisSetup:
    client = aioredis.from_url(admin_url, socket_timeout=10, socket_connect_timeout=10)
    try:
        version = server_version(await client.info("server"))
        users = []
        for role, password in passwords.items():
            user = access.redis_user(role)
            rules = access.redis_acl_rules(role, password, version)
            await client.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
            users.append(user)
        try:
            await client.execute_command("ACL", "SAVE")  # type: ignore[no-untyped-call]
            saved = True
        except ResponseError as exc:  # "This Redis instance is not configured to use an ACL file"
            log.warning("redis has no ACL file: the users are lost when it restarts", extra={"error": str(exc)})
            saved = False
        return RedisSetup(users=users, saved=saved)
    finally:
        await client.aclose()
