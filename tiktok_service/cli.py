"""`tiktok-service <command> [--flag value ...]`.

Each command builds its settings once (environment first, then flags, via pydantic-settings'
own CLI parser) and hands them to its entry point; nothing else reads the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from tiktok_service.domain.exit_codes import ExitCode

S = TypeVar("S", bound=BaseSettings)


def load(model: type[S], command: str, argv: Sequence[str]) -> S:
    """Settings from the environment, overridden by `--kebab-case` flags."""
    return model(
        _cli_parse_args=list(argv),
        _cli_kebab_case=True,
        _cli_prog_name=f"tiktok-service {command}",
        _cli_implicit_flags=True,
    )


def _connector(argv: Sequence[str]) -> int:
    from tiktok_service.connector.main import main
    from tiktok_service.settings import ConnectorSettings

    return main(load(ConnectorSettings, "connector", argv))


def _persister(argv: Sequence[str]) -> int:
    from tiktok_service.persister.main import main
    from tiktok_service.settings import PersisterSettings

    return main(load(PersisterSettings, "persister", argv))


def _migrate(argv: Sequence[str]) -> int:
    from tiktok_service.persister.main import migrate_main
    from tiktok_service.settings import PersisterSettings

    return migrate_main(load(PersisterSettings, "migrate", argv))


def _access(argv: Sequence[str]) -> int:
    from tiktok_service.access.main import main
    from tiktok_service.settings import AccessSettings

    return main(load(AccessSettings, "access", argv))


def _operator(argv: Sequence[str]) -> int:
    from tiktok_service.operator.main import main
    from tiktok_service.settings import OperatorSettings

    return main(load(OperatorSettings, "operator", argv))


def _api(argv: Sequence[str]) -> int:
    from tiktok_service.api.main import serve
    from tiktok_service.settings import ApiSettings

    return serve(load(ApiSettings, "api", argv))


def _api_keys(argv: Sequence[str]) -> int:
    from tiktok_service.api.main import keys_main

    return keys_main(list(argv))


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "connector": (_connector, "connect to one TikTok LIVE room and publish its events to Redis"),
    "persister": (_persister, "store events from the Redis streams in PostgreSQL"),
    "migrate": (_migrate, "apply database migrations and exit"),
    "access": (_access, "create each component's Redis user and database login (idempotent)"),
    "operator": (_operator, "reconcile Livestream resources into connector pods"),
    "api": (_api, "serve the REST API (livestreams, SSE events, history) on port 8002"),
    "api-keys": (_api_keys, "create, list and revoke API keys (one workspace per key)"),
}


def usage() -> str:
    lines = ["usage: tiktok-service <command> [--help] [options]", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"} or args[0] not in COMMANDS:
        print(usage(), file=sys.stderr if args and args[0] not in {"-h", "--help"} else sys.stdout)
        return 0 if not args or args[0] in {"-h", "--help"} else int(ExitCode.CONFIG)
    command, handler = args[0], COMMANDS[args[0]][0]
    try:
        return handler(args[1:])
    except ValidationError as exc:
        print(f"tiktok-service {command}: invalid configuration\n{_errors(exc)}", file=sys.stderr)
        return int(ExitCode.CONFIG)


def _errors(exc: ValidationError) -> str:
    out: list[str] = []
    for error in exc.errors():
        where: Any = ".".join(str(p) for p in error["loc"]) or "settings"
        out.append(f"  {where}: {error['msg']}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
