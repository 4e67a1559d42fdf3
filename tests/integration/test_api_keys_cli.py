"""`tiktok-service api-keys`: keys made, listed and revoked in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from tests.access_support import database_as
from tiktok_service.api import keys, main, repository
from tiktok_service.database.migrate import migrate
from tiktok_service.domain.access import Role


async def _workspace_of(database_url: str, secret: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await repository.workspace_of_key(conn, keys.digest(secret))
    finally:
        await conn.close()


def test_a_created_key_is_shown_once_works_until_revoked_and_is_listed_without_its_secret(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(migrate(database_url))

    assert main.keys_main(["--database-url", database_url, "create", "--workspace", "acme", "--name", "ci"]) == 0
    created = capsys.readouterr().out
    secret = re.search(r"^key: (\S+)$", created, re.MULTILINE)[1]  # type: ignore[index]
    key_id = re.search(r"^id: (\S+)$", created, re.MULTILINE)[1]  # type: ignore[index]
    assert keys.well_formed(secret)
    assert asyncio.run(_workspace_of(database_url, secret)) == "acme"

    assert main.keys_main(["--database-url", database_url, "list", "--workspace", "acme"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "active" in listed and secret not in listed

    assert main.keys_main(["--database-url", database_url, "revoke", key_id]) == 0
    assert asyncio.run(_workspace_of(database_url, secret)) is None
    assert main.keys_main(["--database-url", database_url, "revoke", key_id]) == 1


def test_a_key_for_an_invalid_workspace_id_is_not_made(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.keys_main(["--database-url", database_url, "create", "--workspace", "bad workspace!"]) == 2
    assert "invalid workspace id" in capsys.readouterr().err


def test_a_key_for_a_workspace_that_cannot_own_secrets_is_made_with_a_note(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(migrate(database_url))

    assert main.keys_main(["--database-url", database_url, "create", "--workspace", "acme.corp"]) == 0
    assert "cannot name Secrets" in capsys.readouterr().err

    assert main.keys_main(["--database-url", database_url, "create", "--workspace", "acme-corp"]) == 0
    assert "cannot name Secrets" not in capsys.readouterr().err


def test_the_api_servers_own_login_cannot_make_a_key_and_is_told_to_use_the_owners(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(migrate(database_url))

    api_login = database_as(database_url, Role.API)

    assert main.keys_main(["--database-url", api_login, "create", "--workspace", "acme"]) == 1
    assert "use the database owner's URL" in capsys.readouterr().err
