"""Whether the database holds the schema this API's code needs, for `/readyz`.

The API never changes the schema (its login may not: `0003_roles.sql`); the owner runs
`tiktok-service migrate`. An API started against a database the owner has not migrated
yet would answer ready and then fail every request with a missing table or column, so
readiness asks `schema_migrations` for the versions this code ships with.

Cheap: once every version is there the answer is kept for the life of the process (a
migration is never undone under a running API: a restore from backup restarts it), so a
ready API costs the probe nothing more than the `SELECT 1` it already sends. While
something is missing each probe asks again, so the API becomes ready as soon as the
owner has migrated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import asyncpg

from tiktok_service.database import migrate

log = logging.getLogger(__name__)

#: The `reason` `/readyz` gives when the database lacks migrations this code needs.
SCHEMA_OUTDATED = "database_schema_outdated"


def missing_migrations(applied: Iterable[str], required: Iterable[str]) -> list[str]:
    """The required versions not applied, in order (versions only a newer release knows are fine)."""
    return sorted(set(required) - set(applied))


class SchemaOutdatedError(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"the database lacks migrations {', '.join(missing)}: run `tiktok-service migrate`")
        self.missing = missing


class SchemaCheck:
    """`await check(conn)` raises `SchemaOutdatedError` until every required version is applied."""

    def __init__(self, required: Iterable[str] | None = None) -> None:
        if required is None:
            required = (m.version for m in migrate.available_migrations())
        self._required = frozenset(required)
        self._current = False

    async def __call__(self, conn: asyncpg.Connection) -> None:
        if self._current:
            return
        try:
            applied = await migrate.applied_versions(conn)
        except asyncpg.InsufficientPrivilegeError:
            applied = set()  # SELECT on schema_migrations is granted by a migration not applied yet
        missing = missing_migrations(applied, self._required)
        if missing:
            raise SchemaOutdatedError(missing)
        self._current = True
        log.info("the database schema is up to date", extra={"versions": len(self._required)})
