"""What the connector does after each connection attempt: retry, wait, or exit with a code."""

from __future__ import annotations

import random

import httpx
import pytest
from TikTokLive.client.errors import SignatureRateLimitError, UserNotFoundError, UserOfflineError, WebcastBlockedError

from tiktok_service.connector import outcomes
from tiktok_service.connector.outcomes import Action, Ended
from tiktok_service.domain.exit_codes import ExitCode

POLICY = outcomes.Policy(
    wait_for_live=False, live_poll_interval_s=30, backoff_base_s=1, backoff_cap_s=60, max_reconnects=0
)
WAITING = outcomes.Policy(
    wait_for_live=True, live_poll_interval_s=30, backoff_base_s=1, backoff_cap_s=60, max_reconnects=0
)


def rate_limited(headers: dict[str, str]) -> SignatureRateLimitError:
    response = httpx.Response(429, headers={"RateLimit-Remaining": "0", **headers}, json={"message": "slow down"})
    return SignatureRateLimitError("slow down", "try again in %s seconds", response=response)


def test_live_end_exits_with_the_live_end_code_unless_asked_to_wait() -> None:
    assert outcomes.after_end(Ended.LIVE_END, POLICY) == outcomes.Decision(
        Action.EXIT, "live_end", exit_code=ExitCode.LIVE_ENDED
    )
    assert outcomes.after_end(Ended.LIVE_END, WAITING).action is Action.WAIT_FOR_LIVE


@pytest.mark.parametrize("ended", [Ended.CLOSED, Ended.STALLED])
def test_a_dropped_or_stalled_socket_reconnects_at_once(ended: Ended) -> None:
    decision = outcomes.after_end(ended, POLICY)
    assert decision.action is Action.RECONNECT and decision.delay_s == 0


def test_an_unknown_user_exits_with_its_own_code() -> None:
    decision = outcomes.after_error(UserNotFoundError("bob", "no such user"), 1, POLICY, random.Random(0))
    assert decision.exit_code is ExitCode.USER_NOT_FOUND


def test_an_offline_user_exits_or_is_polled_at_the_configured_interval() -> None:
    assert outcomes.after_error(UserOfflineError(), 1, POLICY, random.Random(0)).exit_code is ExitCode.USER_OFFLINE
    waiting = outcomes.after_error(UserOfflineError(), 1, WAITING, random.Random(0))
    assert waiting.action is Action.WAIT_FOR_LIVE and waiting.delay_s == 30


def test_a_rate_limit_waits_at_least_the_servers_retry_after() -> None:
    decision = outcomes.after_error(rate_limited({"Retry-After": "17"}), 1, POLICY, random.Random(0))
    assert decision.action is Action.RECONNECT and decision.reason == "rate_limited"
    assert decision.delay_s >= 17


def test_network_errors_back_off_exponentially() -> None:
    delays = [outcomes.after_error(OSError("refused"), n, POLICY, random.Random(0)).delay_s for n in (1, 3, 5)]
    assert delays[0] <= 1 < delays[1] <= 4 < delays[2] <= 16


def test_retries_are_bounded_when_asked_and_a_block_says_so() -> None:
    bounded = outcomes.Policy(
        wait_for_live=False, live_poll_interval_s=1, backoff_base_s=1, backoff_cap_s=2, max_reconnects=3
    )
    assert outcomes.after_error(OSError(), 3, bounded, random.Random(0)).action is Action.RECONNECT
    assert outcomes.after_error(OSError(), 4, bounded, random.Random(0)).exit_code is ExitCode.FAILED
    assert outcomes.after_error(WebcastBlockedError("no"), 4, bounded, random.Random(0)).exit_code is ExitCode.BLOCKED
