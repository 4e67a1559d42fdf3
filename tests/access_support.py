"""Each component's password for this test session (random: nothing may depend on them).

In a module of its own, not in conftest.py: pytest imports conftest under its own name, so
a test importing it would get a second module with other passwords.
"""

from __future__ import annotations

import secrets

from tiktok_service.domain import access
from tiktok_service.domain.access import Role

ROLE_PASSWORDS: dict[Role, str] = {role: secrets.token_urlsafe(16) for role in Role}


def redis_as(url: str, role: Role) -> str:
    """The test Redis at `url`, as `role`'s ACL user."""
    return access.redis_role_url(url, role, ROLE_PASSWORDS[role])


def database_as(url: str, role: Role) -> str:
    """The test database at `url` (migrated), as `role`'s login."""
    return access.database_role_url(url, role, ROLE_PASSWORDS[role])
