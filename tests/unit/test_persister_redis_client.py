"""The persister's Redis client uses hiredis both ways: to parse replies and to pack commands."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.typing import EncodableT

from tiktok_service.persister import runner
from tiktok_service.settings import PersisterSettings

COMMANDS: list[tuple[EncodableT, ...]] = [
    ("XACK", "tiktok.comment", "persister", *(f"1767225600000-{n}".encode() for n in range(2_000))),
    ("XREADGROUP GROUP", "persister", "pod-0", "COUNT", 250, "BLOCK", 1000, "STREAMS", "tiktok.like", ">"),
    ("XADD", "tiktok.dead_letter", "MAXLEN", "~", 10_000, "*", "raw", b'{"\xc3\xa9": 1}', "reason", "héllo"),
    ("HELLO", 3),
]


def test_hiredis_parses_the_replies() -> None:
    assert isinstance(runner.HiredisConnection()._parser, _AsyncHiredisParser)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(command: tuple[EncodableT, ...]) -> None:
    packed = b"".join(runner.HiredisConnection().pack_command(*command))
    assert packed == b"".join(aioredis.Connection().pack_command(*command))


async def test_the_persister_client_connects_with_it() -> None:
    """Nothing connects: the pool and the client connect on first use."""
    settings = PersisterSettings(redis_url="redis://127.0.0.1:1/0", database_url="postgresql://x@127.0.0.1:1/x")
    async with runner.open_persister(settings, registry=CollectorRegistry()) as persister:
        assert persister.group.redis.connection_pool.connection_class is runner.HiredisConnection
