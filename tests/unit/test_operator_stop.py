"""The operator's stop is bounded: kopf gets `stop_timeout_s` after SIGTERM, then the operator exits 1."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tiktok_service.operator.main import stop_within
from tiktok_service.settings import OperatorSettings


async def _obeys(stopping: asyncio.Event) -> None:
    await stopping.wait()


async def _ignores(cancelled: list[bool]) -> None:
    try:
        await asyncio.Event().wait()  # a clean-up retrying against a silent API server: never done
    except asyncio.CancelledError:
        cancelled.append(True)
        raise


async def test_a_run_that_stops_when_asked_stops_cleanly() -> None:
    stopping = asyncio.Event()
    stop_wait = asyncio.ensure_future(stopping.wait())
    run = asyncio.ensure_future(stop_within(_obeys(stopping), stop_wait, timeout_s=60))
    stopping.set()

    assert await run is True


async def test_a_run_that_does_not_stop_is_cancelled_after_the_timeout_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    stop_wait = asyncio.ensure_future(stopping.wait())
    cancelled: list[bool] = []
    stopping.set()

    with caplog.at_level(logging.ERROR):
        stopped = await stop_within(_ignores(cancelled), stop_wait, timeout_s=0.01)

    assert stopped is False and cancelled == [True]
    assert "did not stop in time" in caplog.text


async def test_nothing_is_timed_before_the_stop_and_kopfs_own_failure_propagates() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("kopf failed")

    never = asyncio.get_running_loop().create_future()
    with pytest.raises(RuntimeError, match="kopf failed"):
        await stop_within(fails(), never, timeout_s=0.01)
    never.cancel()


def test_the_stop_timeout_fits_the_pods_grace_period() -> None:
    assert OperatorSettings().stop_timeout_s + 5.0 < 30  # + the cancelled tasks' grace, below terminationGracePeriod
