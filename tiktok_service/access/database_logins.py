"""Each component's PostgreSQL login: a member of the group role the migrations grant to.

The split keeps passwords out of migrations (plain SQL in the package) and lets the owner
rotate a password by running the setup again (`ALTER ROLE ... PASSWORD`). The password is
sent as a SCRAM-SHA-256 verifier computed here, never in clear.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import asyncpg

from tiktok_service.database import migrate
from tiktok_service.domain import access

_EXISTS = "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)"


async def apply_database_logins(owner_url: str, passwords: Mapping[access.Role, str]) -> tuple[list[str], list[str]]:
    """Migrate (as the owner), then create or update the logins; (migrations applied, logins)."""
    conn = await asyncpg.connect(owner_url)
    try:
        applied = await migrate.apply_migrations(conn)
        logins = []
        for role, password in passwords.items():
            if role not in access.DATABASE_ROLES:
                raise ValueError(f"{role} has no database role")
            exists = bool(await conn.fetchval(_EXISTS, access.database_login(role)))
            verifier = access.scram_sha256_verifier(password, os.urandom(16))
            async with conn.transaction():
                for statement in access.login_statements(role, verifier, exists=exists):
                    await conn.execute(statement)
            logins.append(access.database_login(role))
        return applied, logins
    finally:
        await conn.close()
