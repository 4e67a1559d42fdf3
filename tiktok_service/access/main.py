"""`tiktok-service access`: each component's Redis user and database login, idempotently."""

from __future__ import annotations

import asyncio
import sys

from pydantic import SecretStr

from tiktok_service import logs
from tiktok_service.access.database_logins import apply_database_logins
from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.domain.access import Role
from tiktok_service.settings import AccessSettings


def _given(values: dict[Role, SecretStr | None], what: str) -> dict[Role, str]:
    chosen = {}
    for role, secret in values.items():
        if secret is None or not secret.get_secret_value():
            print(f"{what} {role}: no password given, skipped", file=sys.stderr)
        else:
            chosen[role] = secret.get_secret_value()
    return chosen


async def run(settings: AccessSettings) -> int:
    if settings.redis_url is None and settings.database_url is None:
        print("nothing to do: set ACCESS_REDIS_URL and/or ACCESS_DATABASE_URL", file=sys.stderr)
        return 2
    if settings.redis_url is not None:
        passwords = _given(
            {
                Role.CONNECTOR: settings.redis_password_connector,
                Role.PERSISTER: settings.redis_password_persister,
                Role.API: settings.redis_password_api,
                Role.OPERATOR: settings.redis_password_operator,
            },
            "redis user",
        )
        redis = await apply_redis_users(settings.redis_url, passwords)
        print(f"redis users: {', '.join(redis.users) or 'none'}" + ("" if redis.saved else " (NOT saved: no aclfile)"))
    if settings.database_url is not None:
        passwords = _given(
            {
                Role.PERSISTER: settings.database_password_persister,
                Role.OPERATOR: settings.database_password_operator,
                Role.API: settings.database_password_api,
            },
            "database login",
        )
        applied, logins = await apply_database_logins(settings.database_url, passwords)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        print(f"database logins: {', '.join(logins) or 'none'}")
    return 0


def main(settings: AccessSettings) -> int:
    logs.configure("access", settings.log_level)
    return asyncio.run(run(settings))
