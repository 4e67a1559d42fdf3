"""Versioned schema migrations: `migrations/NNNN_name.sql`, applied in order, exactly once.

Why not a migration framework: the schema is small, the files are plain SQL a reviewer can
read, and the guarantees we need fit in one function:

* All pending migrations run in ONE transaction, so a failure leaves the schema unchanged.
* The transaction first takes a `pg_advisory_xact_lock`, so persisters starting side by side
  (and `tiktok-service migrate` run by hand) serialise instead of racing on CREATE TABLE;
  the losers find the work done and apply nothing.
* Each applied version is recorded in `schema_migrations`; running again is a no-op.
* Up to date is decided first, without the lock and without DDL, so a component whose
  role may not change the schema (every one but the owner: see `0003_roles.sql`) starts
  when the owner has migrated, and waits (the caller retries) while it has not.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

import asyncpg

log = logging.getLogger(__name__)

#: Arbitrary constant shared by every process that migrates this schema ("tiktoksv" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x74696B746F6B7376
_FILE_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_LOCK = "SELECT pg_advisory_xact_lock($1)"
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED = "SELECT version FROM schema_migrations"
_RECORD = "INSERT INTO schema_migrations (version) VALUES ($1)"


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # the file name without `.sql`, e.g. "0001_initial"
    sql: str


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order.

    Raises ValueError for a file that does not follow `NNNN_name.sql` or reuses a number:
    a misnamed file must fail loudly, not be skipped.
    """
    folder = resources.files("tiktok_service.database") / "migrations"
    found: list[Migration] = []
    numbers: set[str] = set()
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        if match.group(1) in numbers:
            raise ValueError(f"migration number {match.group(1)} is used twice")
        numbers.add(match.group(1))
        found.append(Migration(version=entry.name.removesuffix(".sql"), sql=entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def pending_migrations(available: list[Migration], applied: set[str]) -> list[Migration]:
    """The migrations still to apply (pure: decided from what the table says)."""
    return [m for m in available if m.version not in applied]


async def applied_versions(conn: asyncpg.Connection) -> set[str]:
    """Versions recorded in `schema_migrations` (none while the table does not exist)."""
    try:
        return {row["version"] for row in await conn.fetch(_APPLIED)}
    except asyncpg.UndefinedTableError:
        return set()


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations on `conn` in one locked transaction; returns their versions.

    Nothing pending: returns at once, touching nothing (any role that may read
    `schema_migrations` gets this far). Something pending with a role that may not run DDL:
    `asyncpg.InsufficientPrivilegeError`, which the persister retries with backoff until
    the owner has migrated.
    """
    available = available_migrations()
    if not pending_migrations(available, await applied_versions(conn)):
        return []
    async with conn.transaction():
        await conn.execute(_LOCK, MIGRATION_LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        applied = {row["version"] for row in await conn.fetch(_APPLIED)}
        todo = pending_migrations(available, applied)
        for migration in todo:
            log.info("applying migration", extra={"version": migration.version})
            await conn.execute(migration.sql)
            await conn.execute(_RECORD, migration.version)
    return [m.version for m in todo]


async def migrate(dsn: str) -> list[str]:
    """Entry point of `tiktok-service migrate`: connect, apply, disconnect."""
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()
