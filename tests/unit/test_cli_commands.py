"""The product's command runs the components only; developer commands are `tiktok-service-dev`'s."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from tiktok_service import cli
from tiktok_service.domain.exit_codes import ExitCode
from tiktok_service_dev import cli as dev_cli


def test_the_product_command_offers_only_what_a_cluster_runs() -> None:
    assert set(cli.COMMANDS) == {"connector", "persister", "migrate", "access", "operator", "api", "api-keys"}


def test_the_developer_command_offers_the_local_stack_and_its_tools() -> None:
    assert set(dev_cli.COMMANDS) == {"dev", "node-agent", "simulator", "schemas"}


@pytest.mark.parametrize("main", [cli.main, dev_cli.main])
def test_an_unknown_command_prints_the_usage_and_fails(
    main: Callable[[Sequence[str] | None], int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node-agent-typo"]) == int(ExitCode.CONFIG)
    assert "usage:" in capsys.readouterr().err


def test_a_developer_command_is_not_a_product_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulator"]) == int(ExitCode.CONFIG)
    assert "usage: tiktok-service <command>" in capsys.readouterr().err
