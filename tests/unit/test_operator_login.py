"""The login decision: refused credentials are retried with backoff, and given up only when stopping."""

from __future__ import annotations

import pytest

from tiktok_service.operator.login import BACKOFF_S, Step, Verdict, next_step


@pytest.mark.parametrize("stopping", [False, True])
@pytest.mark.parametrize("verdict", [Verdict.ACCEPTED, Verdict.UNKNOWN])
def test_credentials_not_refused_are_used(verdict: Verdict, stopping: bool) -> None:
    """An outage is no verdict on the credentials: kopf's own request retries cover it."""
    assert next_step(verdict, refusals=0, stopping=stopping) == Step("use")


def test_refused_credentials_are_retried_with_doubling_backoff_up_to_a_ceiling() -> None:
    delays = [next_step(Verdict.REFUSED, refusals=n, stopping=False) for n in range(1, 10)]
    assert {step.action for step in delays} == {"retry"}
    assert [step.delay_s for step in delays] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert max(BACKOFF_S) <= 30.0  # within a liveness probe's window: a renewed token is picked up soon


def test_refused_while_stopping_gives_up_at_once() -> None:
    assert next_step(Verdict.REFUSED, refusals=1, stopping=True) == Step("give_up")
    assert next_step(Verdict.REFUSED, refusals=7, stopping=True) == Step("give_up")
