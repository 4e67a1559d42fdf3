"""`tiktok-service access`: each component's Redis user and database login, idempotently.

Each component's password is read from its own URL (the Secret key the component itself
reads), so a password is kept in exactly one place; rotating one is: change the Secret, run
this again, restart the component.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping

from pydantic import SecretStr

from tiktok_service import logs
from tiktok_service.access.database_logins import apply_database_logins
from tiktok_service.access.redis_users import apply_redis_users
from tiktok_service.domain import access
from tiktok_service.domain.access import Role
from tiktok_service.settings import AccessSettings


def passwords_from(urls: Mapping[Role, SecretStr | None], user: Callable[[Role], str], what: str) -> dict[Role, str]:
    """Each given URL's password (checked to name its role's user); roles without a URL are skipped."""
    chosen = {}
    for role, url in urls.items():
        if url is None or not url.get_secret_value():
            print(f"{what} {user(role)}: no URL given, skipped", file=sys.stderr)
            continue
        try:
            chosen[role] = access.password_in(url.get_secret_value(), user(role))
        except ValueError as exc:
            raise SystemExit(f"{what} for the {role}: {exc}") from None
    return chosen


async def run(settings: AccessSettings) -> int:
    if settings.redis_url is None and settings.database_url is None:
        print("nothing to do: set ACCESS_REDIS_URL and/or ACCESS_DATABASE_URL", file=sys.stderr)
        return 2
    if settings.redis_url is not None:
        redis_urls = {
            Role.CONNECTOR: settings.connector_redis_url,
            Role.PERSISTER: settings.persister_redis_url,
            Role.API: settings.api_redis_url,
            Role.OPERATOR: settings.operator_redis_url,
        }
        passwords = passwords_from(redis_urls, access.redis_user, "redis user")
        redis = await apply_redis_users(settings.redis_url.get_secret_value(), passwords)
        saved = "" if redis.saved else " (NOT saved: Redis has no aclfile, they are lost when it restarts)"
        print(f"redis users: {', '.join(redis.users) or 'none'}{saved}")
    if settings.database_url is not None:
        database_urls = {
            Role.PERSISTER: settings.persister_database_url,
            Role.OPERATOR: settings.operator_database_url,
            Role.API: settings.api_database_url,
        }
        passwords = passwords_from(database_urls, access.database_login, "database login")
        applied, logins = await apply_database_logins(settings.database_url.get_secret_value(), passwords)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        print(f"database logins: {', '.join(logins) or 'none'}")
    return 0


def main(settings: AccessSettings) -> int:
    logs.configure("access", settings.log_level)
    return asyncio.run(run(settings))
