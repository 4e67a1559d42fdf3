"""`tiktok-service-dev <command>`: the developer commands, apart from the product's CLI.

`tiktok-service` is what the image runs; these commands start local infrastructure, the
simulator and the whole stack, and regenerate files in a checkout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from tiktok_service.domain.exit_codes import ExitCode


def _dev(argv: Sequence[str]) -> int:
    from tiktok_service_dev.dev import main

    return main(list(argv))


def _node_agent(argv: Sequence[str]) -> int:
    from tiktok_service_dev.node_agent.cli import main

    return main(list(argv))


def _simulator(argv: Sequence[str]) -> int:
    from tiktok_service_dev.simulator.__main__ import main

    return main(list(argv))


def _schemas(argv: Sequence[str]) -> int:
    from tiktok_service_dev.schemas import main

    return main(list(argv))


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "dev": (_dev, "run the whole stack locally and show events arriving"),
    "node-agent": (_node_agent, "run pods bound to a local Node as processes (a kubelet stand-in)"),
    "simulator": (_simulator, "run the TikTok LIVE simulator (tests, demos, consumer development)"),
    "schemas": (_schemas, "regenerate the event contract: schema files, README table, CRD type list"),
}


def usage() -> str:
    lines = ["usage: tiktok-service-dev <command> [--help] [options]", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0
    if args[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        return int(ExitCode.CONFIG)
    return COMMANDS[args[0]][0](args[1:])


if __name__ == "__main__":
    sys.exit(main())
