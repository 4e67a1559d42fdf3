"""Console entry points: `tiktok-service persister` and `tiktok-service migrate`."""

from __future__ import annotations

import asyncio

from tiktok_service import logs
from tiktok_service.database.migrate import migrate
from tiktok_service.persister.runner import run_persister
from tiktok_service.settings import PersisterSettings


def main(settings: PersisterSettings) -> int:
    return asyncio.run(run_persister(settings))


def migrate_main(settings: PersisterSettings) -> int:
    logs.configure("migrate", settings.log_level)
    applied = asyncio.run(migrate(settings.database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0
