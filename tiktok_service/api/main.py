"""Entry points: `tiktok-service api` (serve) and `tiktok-service api-keys` (create, list, revoke keys).

Shutdown (SIGTERM): the server stops accepting, tells the app to end every SSE stream
(`begin_shutdown`), then waits for open requests (at most `shutdown_timeout_s`) and runs
the lifespan's cleanup. Without the first step uvicorn would wait on streams that never end.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import uuid
from collections.abc import Sequence

import asyncpg
import uvicorn

from tiktok_service import logs
from tiktok_service.api import app as api_app
from tiktok_service.api import keys, repository, resources
from tiktok_service.settings import ApiSettings


class ApiServer(uvicorn.Server):
    """uvicorn's server, ending SSE streams as soon as a shutdown begins."""

    def __init__(self, settings: ApiSettings) -> None:
        self.app = api_app.create_app(settings)
        super().__init__(
            uvicorn.Config(
                self.app,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
                lifespan="on",
                proxy_headers=False,
            )
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        api_app.begin_shutdown(self.app)
        await super().shutdown(sockets)


def serve(settings: ApiSettings) -> int:
    logs.configure("api", settings.log_level)
    server = ApiServer(settings)
    server.run()
    return 0 if server.started else 1


# -- api-keys -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiktok-service api-keys",
        description="Manage API keys (stored hashed in PostgreSQL; API_DATABASE_URL or --database-url).",
    )
    parser.add_argument("--database-url", help="PostgreSQL DSN (default: API_DATABASE_URL / DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key for a workspace; the key is printed once")
    create.add_argument("--workspace", required=True, help="workspace id the key is scoped to")
    create.add_argument("--name", default="", help="what the key is for (shown in listings)")
    listing = commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--workspace", help="only this workspace's keys")
    revoke = commands.add_parser("revoke", help="revoke a key by its id (takes effect on the next request)")
    revoke.add_argument("key_id", type=uuid.UUID)
    return parser


async def _keys(args: argparse.Namespace, database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        if args.command == "create":
            new = keys.generate()
            key = await repository.insert_key(
                conn, workspace_id=args.workspace, name=args.name, key_hash=new.digest, key_prefix=new.shown
            )
            print(f"id: {key.id}\nworkspace: {key.workspace_id}\nkey: {new.secret}")
            print("(store the key now: only its hash is kept)", file=sys.stderr)
            return 0
        if args.command == "list":
            for key in await repository.list_keys(conn, args.workspace):
                state = f"revoked {key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if key.revoked_at else "active"
                print(f"{key.id}  {key.workspace_id}  {key.key_prefix}…  {state}  {key.name}")
            return 0
        revoked = await repository.revoke_key(conn, args.key_id)
        if revoked is None:
            print(f"no active key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {revoked.id} ({revoked.workspace_id})")
        return 0
    finally:
        await conn.close()


def keys_main(argv: Sequence[str]) -> int:
    """`tiktok-service api-keys {create,list,revoke}`."""
    args = _parser().parse_args(list(argv))
    if args.command == "create" and not resources.valid_workspace(args.workspace):
        print(f"invalid workspace id {args.workspace!r}: {resources.WORKSPACE_PATTERN}", file=sys.stderr)
        return 2
    if args.command == "create" and not resources.can_own_secrets(args.workspace):
        print(
            f"note: workspace {args.workspace!r} can connect but cannot name Secrets (proxies, sessions); "
            "only ids of lower-case letters, digits and single dashes can",
            file=sys.stderr,
        )
    database_url = args.database_url or ApiSettings().database_url
    try:
        return asyncio.run(_keys(args, database_url))
    except asyncpg.InsufficientPrivilegeError:
        # The API server's own login only reads keys (README, "Credentials and least privilege").
        print("this login may not manage API keys: use the database owner's URL (--database-url)", file=sys.stderr)
        return 1
