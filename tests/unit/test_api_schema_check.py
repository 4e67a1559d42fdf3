"""The readiness schema decision: every version this code ships with must be applied."""

from __future__ import annotations

import pytest

from tiktok_service.api.schema_check import SchemaCheck, SchemaOutdatedError, missing_migrations
from tiktok_service.database import migrate


def test_missing_versions_are_listed_in_order() -> None:
    assert missing_migrations(set(), ["0002_b", "0001_a"]) == ["0001_a", "0002_b"]
    assert missing_migrations({"0001_a"}, ["0001_a", "0002_b"]) == ["0002_b"]


def test_versions_only_a_newer_release_knows_do_not_make_it_outdated() -> None:
    assert missing_migrations({"0001_a", "0002_b", "0009_later"}, ["0001_a", "0002_b"]) == []


def test_the_required_versions_default_to_every_shipped_migration() -> None:
    shipped = [m.version for m in migrate.available_migrations()]
    assert shipped, "no migration shipped"
    assert missing_migrations(set(), SchemaCheck()._required) == shipped


class _Conn:
    """Stands in for a connection: answers `SELECT version FROM schema_migrations` and counts the calls."""

    def __init__(self, versions: list[str]) -> None:
        self.versions, self.calls = versions, 0

    async def fetch(self, query: str) -> list[dict[str, str]]:
        self.calls += 1
        return [{"version": v} for v in self.versions]


async def test_an_up_to_date_schema_is_not_asked_again_an_outdated_one_is() -> None:
    check = SchemaCheck(["0001_a", "0002_b"])
    conn = _Conn(["0001_a"])
    for _ in range(2):
        with pytest.raises(SchemaOutdatedError) as outdated:
            await check(conn)  # type: ignore[arg-type]
    assert outdated.value.missing == ["0002_b"]
    conn.versions.append("0002_b")
    for _ in range(3):
        await check(conn)  # type: ignore[arg-type]
    assert conn.calls == 3
