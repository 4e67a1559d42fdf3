"""What the connector does after each connection attempt: retry, wait, rotate, or exit with a code."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import httpx
import pytest
import python_socks
from TikTokLive.client.errors import (
    AgeRestrictedError,
    PremiumEndpointError,
    SignAPIError,
    SignatureRateLimitError,
    UserNotFoundError,
    UserOfflineError,
    WebcastBlockedError,
)
from TikTokLive.client.web.routes.fetch_is_live import MissingRoomIdInResponse
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError
from TikTokLive.client.web.routes.fetch_room_info import FailedFetchRoomInfoError
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from tiktok_service.connector import outcomes
from tiktok_service.connector.outcomes import Action, Ended, Kind, Outcome, Streak
from tiktok_service.connector.sign_quota import SignQuotaSpent
from tiktok_service.connector.verify_pages import CaptchaRequired
from tiktok_service.domain.exit_codes import ExitCode

NOW = 1_800_000_000.0
POLICY = outcomes.Policy(
    wait_for_live=False, live_poll_interval_s=30, backoff_base_s=1, backoff_cap_s=60, max_reconnects=0
)
WAITING = replace(POLICY, wait_for_live=True)


def rate_limited(headers: dict[str, str]) -> SignatureRateLimitError:
    response = httpx.Response(429, headers={"RateLimit-Remaining": "0", **headers}, json={"message": "slow down"})
    return SignatureRateLimitError("slow down", "try again in %s seconds", response=response)


def classify(exc: BaseException, **kwargs: object) -> Kind:
    return outcomes.classify(exc, now=NOW, **kwargs).kind  # type: ignore[arg-type]


def run(outcome: Outcome, times: int, policy: outcomes.Policy = POLICY) -> list[outcomes.Decision]:
    """The decisions for `times` attempts in a row that all end with `outcome`."""
    streak, decisions, rng = Streak(), [], random.Random(0)
    for _ in range(times):
        decision, streak = outcomes.decide(outcome, streak, policy, rng, now=NOW)
        decisions.append(decision)
        if decision.action is Action.EXIT:
            break
    return decisions


HTML_FAILED = "Failed to extract the SIGI_STATE HTML tag, you might be blocked by TikTok."


def lookup_chain(top: Exception, html: Exception | None = None) -> Exception:
    """How `TikTokLiveClient.start` raises when both room lookups fail: the API error from the HTML one."""
    try:
        try:
            raise html or FailedParseRoomIdError(HTML_FAILED)
        except Exception as base:
            raise top from base
    except Exception as raised:
        return raised


def masked(hidden: BaseException, by: type[Exception] = MissingRoomIdInResponse) -> Exception:
    """How `fetch_is_live(room_id=...)` raises: whatever happened, re-raised from a bare `except`."""
    try:
        try:
            raise hidden
        except BaseException:  # the library's bare except
            raise by("Room ID 1 did not return any entries.")  # noqa: B904 - as the library does
    except Exception as raised:
        return raised


def status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://webcast.tiktok.com/webcast/room/check_alive/")
    return httpx.HTTPStatusError("throttled", request=request, response=httpx.Response(status, request=request))


def closed(code: int, reason: str = "") -> ConnectionClosedError:
    return ConnectionClosedError(Close(code, reason), None)


# -- classification ---------------------------------------------------------------------------


def test_the_libraries_errors_are_told_apart() -> None:
    assert classify(UserNotFoundError("bob", "no such user")) is Kind.USER_NOT_FOUND
    assert classify(UserOfflineError()) is Kind.OFFLINE
    assert classify(AgeRestrictedError()) is Kind.AGE_RESTRICTED
    assert classify(WebcastBlockedError("rejected")) is Kind.BLOCKED
    assert classify(rate_limited({})) is Kind.RATE_LIMITED
    assert classify(TimeoutError()) is Kind.TIMEOUT
    assert classify(httpx.ConnectError("refused")) is Kind.NETWORK
    assert classify(RuntimeError("bug")) is Kind.ERROR


def test_only_tiktoks_verify_answer_is_a_captcha() -> None:
    # The API fallback answered TikTok's verify JSON or page (recognised by the room-id routes).
    assert classify(lookup_chain(CaptchaRequired("verify JSON"))) is Kind.CAPTCHA
    assert classify(lookup_chain(CaptchaRequired("verify JSON"), CaptchaRequired("verify page"))) is Kind.CAPTCHA
    # A verify page for the live page, then an API answer that cannot be read: still the captcha.
    assert classify(lookup_chain(KeyError("message"), CaptchaRequired("verify page"))) is Kind.CAPTCHA


def test_a_user_who_cannot_stream_is_not_found_not_a_captcha() -> None:
    # The API answered, without a room id: the user exists but has no room (or does not exist).
    assert classify(lookup_chain(FailedParseRoomIdError("That user can't stream"))) is Kind.USER_NOT_FOUND
    assert classify(lookup_chain(UserNotFoundError("bob", "no such user"))) is Kind.USER_NOT_FOUND
    # TikTok's last answer counts: a verify page for the live page, then a real "no room" from the API.
    no_room = lookup_chain(FailedParseRoomIdError("That user can't stream"), CaptchaRequired("verify page"))
    assert classify(no_room) is Kind.USER_NOT_FOUND
    assert run(Outcome(classify(no_room)), 10)[-1].exit_code is ExitCode.USER_NOT_FOUND


def test_a_lookup_answer_that_cannot_be_read_is_a_lookup_failure_not_a_captcha() -> None:
    assert classify(lookup_chain(KeyError("message"))) is Kind.ROOM_LOOKUP
    assert classify(lookup_chain(json.JSONDecodeError("Expecting value", "<html>", 0))) is Kind.ROOM_LOOKUP
    assert classify(lookup_chain(ValueError("invalid literal for int() with base 10: ''"))) is Kind.ROOM_LOOKUP
    # A KeyError that has nothing to do with the lookup stays an error.
    assert classify(KeyError("message")) is Kind.ERROR


@pytest.mark.parametrize("by", [MissingRoomIdInResponse, FailedFetchRoomInfoError])
@pytest.mark.parametrize(
    ("hidden", "proxied", "kind"),
    [
        (status_error(429), False, Kind.TIKTOK_RATE_LIMITED),
        (httpx.ReadTimeout("slow"), False, Kind.TIMEOUT),
        (TimeoutError(), False, Kind.TIMEOUT),
        (httpx.ConnectError("refused"), True, Kind.PROXY_ERROR),
        (httpx.ProxyError("407 Proxy Authentication Required"), False, Kind.PROXY_ERROR),
        (httpx.ConnectError("refused"), False, Kind.NETWORK),
        (httpx.RemoteProtocolError("peer closed"), False, Kind.NETWORK),
        (IndexError("list index out of range"), False, Kind.ROOM_LOOKUP),  # no entry for that room id
        (KeyError("data"), False, Kind.ROOM_LOOKUP),
    ],
)
def test_errors_the_live_check_hides_are_named_by_what_happened(
    by: type[Exception], hidden: BaseException, proxied: bool, kind: Kind
) -> None:
    assert classify(masked(hidden, by), proxied=proxied) is kind


def test_the_sign_servers_answers_are_told_apart() -> None:
    unauthorized = httpx.Response(401, json={"message": "Invalid API key."})
    assert classify(SignAPIError(SignAPIError.ErrorReason.SIGN_NOT_200, "no", response=unauthorized)) is (
        Kind.SIGN_REJECTED
    )
    assert classify(PremiumEndpointError("no", api_message="upgrade", response=unauthorized)) is Kind.SIGN_REJECTED
    failing = httpx.Response(500, json={"message": "A 504 error occurred whilst fetching the webcast URL."})
    assert classify(SignAPIError(SignAPIError.ErrorReason.SIGN_NOT_200, "no", response=failing)) is Kind.SIGN_ERROR
    assert classify(SignAPIError(SignAPIError.ErrorReason.EMPTY_PAYLOAD, "empty")) is Kind.SIGN_ERROR


@pytest.mark.parametrize(
    "exc",
    [
        python_socks.ProxyError("Connection not allowed by ruleset"),
        python_socks.ProxyConnectionError("Could not connect to proxy 127.0.0.1:1 [Connection refused]"),
        python_socks.ProxyTimeoutError("Proxy connection timed out: 10"),
        httpx.ProxyError("407 Proxy Authentication Required"),
    ],
)
def test_errors_opening_the_proxy_are_proxy_errors(exc: Exception) -> None:
    assert classify(exc) is Kind.PROXY_ERROR
    try:
        raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert classify(wrapped) is Kind.PROXY_ERROR


def test_a_refused_connect_is_the_proxys_when_every_connection_goes_through_one() -> None:
    assert classify(httpx.ConnectError("refused"), proxied=True) is Kind.PROXY_ERROR
    assert classify(ConnectionRefusedError(), proxied=True) is Kind.PROXY_ERROR
    assert classify(httpx.ReadTimeout("slow"), proxied=True) is Kind.TIMEOUT


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (4429, Kind.RATE_LIMITED),  # TOO_MANY_CONNECTIONS: backs off
        (4555, Kind.SESSION_CAP),  # MAX_LIFETIME_EXCEEDED: reconnects
        (4006, Kind.STALLED),  # NO_MESSAGES_TIMEOUT
        # TikTok's push server is not EulerStream's: no code is final on its own.
        (4400, Kind.CONNECTION_CLOSED),
        (4401, Kind.CONNECTION_CLOSED),
        (4403, Kind.CONNECTION_CLOSED),
        (4404, Kind.CONNECTION_CLOSED),
        (4005, Kind.CONNECTION_CLOSED),
        (4500, Kind.CONNECTION_CLOSED),
        (4556, Kind.CONNECTION_CLOSED),
        (1011, Kind.CONNECTION_CLOSED),
        (4999, Kind.CONNECTION_CLOSED),  # undocumented
    ],
)
def test_close_codes_keep_only_their_retryable_meanings(code: int, kind: Kind) -> None:
    assert classify(closed(code)) is kind
    assert outcomes.of_end(Ended.CLOSED, 3, close_code=code).kind is kind
    assert classify(ConnectionClosedError(None, None)) is Kind.CONNECTION_CLOSED


@pytest.mark.parametrize("code", [4400, 4401, 4403, 4404, 4005, 4999])
def test_no_close_code_ends_the_connector_on_its_own(code: int) -> None:
    decisions = run(outcomes.classify(closed(code), lived_s=2, now=NOW), 5)
    assert all(d.action is Action.RECONNECT and d.delay_s > 0 for d in decisions)
    waiting = run(outcomes.classify(closed(code), lived_s=2, now=NOW), 5, WAITING)
    assert all(d.action is Action.RECONNECT for d in waiting)


def test_the_reset_the_sign_server_announces_is_read_from_its_headers() -> None:
    assert outcomes.classify(rate_limited({"Retry-After": "17"}), now=NOW).retry_at == NOW + 17
    reset = outcomes.classify(rate_limited({"RateLimit-Reset": str(int(NOW) + 3600)}), now=NOW)
    assert reset.retry_at == NOW + 3600
    assert outcomes.classify(rate_limited({}), now=NOW).retry_at is None


def test_a_sign_server_429_with_only_retry_after_is_a_spent_quota_not_an_error() -> None:
    response = httpx.Response(429, headers={"Retry-After": "17"}, json={"message": "slow down"})
    # The library cannot build its own error from such an answer (it reads RateLimit-Remaining).
    with pytest.raises(TypeError):
        SignatureRateLimitError("slow down", "try again in %s seconds", response=response)
    outcome = outcomes.classify(SignQuotaSpent(response), now=NOW)
    assert (outcome.kind, outcome.retry_at) == (Kind.RATE_LIMITED, NOW + 17)
    far = SignQuotaSpent(httpx.Response(429, headers={"Retry-After": "7200"}))
    assert run(outcomes.classify(far, now=NOW), 1)[-1].exit_code is ExitCode.SIGN_QUOTA
    assert outcomes.classify(SignQuotaSpent(httpx.Response(429)), now=NOW).kind is Kind.RATE_LIMITED


# -- decisions ----------------------------------------------------------------------------------


def test_live_end_exits_with_the_live_end_code_unless_asked_to_wait() -> None:
    assert run(Outcome(Kind.LIVE_END), 1)[-1].exit_code is ExitCode.LIVE_ENDED
    assert run(Outcome(Kind.LIVE_END), 1, WAITING)[-1].action is Action.WAIT_FOR_LIVE


def test_a_configured_room_id_is_stale_after_a_live_end_or_an_offline_answer() -> None:
    assert outcomes.ends_pinned_room(Kind.LIVE_END) and outcomes.ends_pinned_room(Kind.OFFLINE)
    kept = [k for k in Kind if k not in (Kind.LIVE_END, Kind.OFFLINE)]
    assert not any(outcomes.ends_pinned_room(k) for k in kept)


@pytest.mark.parametrize("ended", [Ended.CLOSED, Ended.STALLED])
def test_a_socket_that_held_reconnects_at_once(ended: Ended) -> None:
    decision = run(outcomes.of_end(ended, lived_s=600), 1)[-1]
    assert decision.action is Action.RECONNECT and decision.delay_s == 0


def test_a_socket_that_keeps_closing_cleanly_backs_off_instead_of_spinning() -> None:
    decisions = run(outcomes.of_end(Ended.CLOSED, lived_s=0.5), 6)
    delays = [d.delay_s for d in decisions]
    assert all(d.action is Action.RECONNECT and d.reason == "closed" for d in decisions)
    assert delays[0] > 0 and delays[-1] > delays[0] * 4, delays


def test_a_long_connection_resets_the_failure_count() -> None:
    streak = Streak(failures=5, kind=Kind.CLOSED, same=5)
    decision, after = outcomes.decide(outcomes.of_end(Ended.CLOSED, 600), streak, POLICY, random.Random(0), now=NOW)
    assert decision.delay_s == 0 and after == Streak()
    # A failure right after a long connection is the first of a new streak.
    decision, after = outcomes.decide(Outcome(Kind.CONNECTION_CLOSED, 600), streak, POLICY, random.Random(0), now=NOW)
    assert after.failures == 1 and decision.delay_s <= POLICY.backoff_base_s


def test_the_sign_servers_session_cap_reconnects_at_once_and_is_not_a_failure() -> None:
    outcome = outcomes.classify(closed(4555, "MAX_LIFETIME_EXCEEDED"), lived_s=8 * 3600, now=NOW)
    decision, streak = outcomes.decide(outcome, Streak(failures=3), POLICY, random.Random(0), now=NOW)
    assert decision.action is Action.RECONNECT and decision.delay_s == 0 and streak == Streak()
    # The same code seconds after opening is no lifetime reached: it backs off like any failure.
    early = outcomes.classify(closed(4555), lived_s=2, now=NOW)
    assert run(early, 3)[-1].delay_s > 0


def test_user_not_found_is_retried_with_backoff_before_it_exits_because_captcha_pages_look_like_it() -> None:
    decisions = run(Outcome(Kind.USER_NOT_FOUND), 10)
    assert [d.action for d in decisions] == [Action.RECONNECT] * 3 + [Action.EXIT]
    assert decisions[-1].exit_code is ExitCode.USER_NOT_FOUND
    assert 0 < decisions[0].delay_s < decisions[2].delay_s
    assert all(d.rotate_proxy for d in decisions[:-1])


def test_captcha_pages_are_retried_then_exit_with_the_captcha_code() -> None:
    decisions = run(Outcome(Kind.CAPTCHA), 10)
    assert len(decisions) == POLICY.captcha_attempts and decisions[-1].exit_code is ExitCode.CAPTCHA


def test_a_blocked_handshake_is_retried_on_the_next_proxy_then_exits_blocked() -> None:
    decisions = run(Outcome(Kind.BLOCKED), 10)
    assert decisions[0].rotate_proxy and decisions[-1].exit_code is ExitCode.BLOCKED
    assert len(decisions) == POLICY.blocked_attempts
    with_three = outcomes.with_proxy(POLICY, proxies=3)
    assert len(run(Outcome(Kind.BLOCKED), 10, with_three)) == 4  # every proxy, then the first again


def test_proxy_failures_rotate_then_exit_with_the_proxy_code() -> None:
    decisions = run(Outcome(Kind.PROXY_ERROR), 20)
    assert all(d.rotate_proxy for d in decisions[:-1]) and decisions[-1].exit_code is ExitCode.PROXY
    assert len(decisions) == POLICY.proxy_attempts


def test_age_restriction_and_configuration_errors_exit_at_once() -> None:
    assert run(Outcome(Kind.AGE_RESTRICTED), 3) == [
        outcomes.Decision(Action.EXIT, "age_restricted", exit_code=ExitCode.AGE_RESTRICTED)
    ]
    assert run(Outcome(Kind.SIGN_REJECTED), 3)[-1].exit_code is ExitCode.CONFIG
    assert run(Outcome(Kind.CONFIG), 3)[-1].exit_code is ExitCode.CONFIG


def test_an_offline_user_exits_or_is_polled_at_the_configured_interval() -> None:
    assert run(Outcome(Kind.OFFLINE), 1)[-1].exit_code is ExitCode.USER_OFFLINE
    waiting = run(Outcome(Kind.OFFLINE), 1, WAITING)[-1]
    assert waiting.action is Action.WAIT_FOR_LIVE and waiting.delay_s == 30


def test_a_short_sign_quota_reset_is_waited_for_in_process() -> None:
    decision = run(Outcome(Kind.RATE_LIMITED, retry_at=NOW + 17), 1)[-1]
    assert decision.action is Action.RECONNECT and decision.reason == "rate_limited"
    assert decision.delay_s >= 17 and not decision.rotate_proxy


def test_a_long_sign_quota_reset_exits_so_the_operator_waits_until_then() -> None:
    reset = NOW + 6 * 3600
    decision = run(Outcome(Kind.RATE_LIMITED, retry_at=reset), 1)[-1]
    assert decision.action is Action.EXIT and decision.exit_code is ExitCode.SIGN_QUOTA
    assert decision.retry_at == reset


def test_network_errors_back_off_exponentially() -> None:
    delays = [d.delay_s for d in run(Outcome(Kind.NETWORK), 5)]
    assert delays[0] <= 1 < delays[2] <= 4 < delays[4] <= 16


def test_retries_are_bounded_when_asked() -> None:
    bounded = replace(POLICY, max_reconnects=3)
    decisions = run(Outcome(Kind.NETWORK), 10, bounded)
    assert len(decisions) == 4 and decisions[-1].exit_code is ExitCode.FAILED
    assert decisions[-1].reason == "retries_exhausted:network"


def test_a_stop_exits_cleanly_whatever_came_before() -> None:
    decision, _ = outcomes.decide(Outcome(Kind.STOPPED), Streak(failures=9), POLICY, random.Random(0), now=NOW)
    assert decision.action is Action.EXIT and decision.exit_code is ExitCode.STOPPED


def test_a_close_code_read_after_a_quiet_end_names_the_outcome() -> None:
    # TikTokLive ends quietly when it notices a closed socket between frames; the code still counts.
    assert outcomes.of_end(Ended.CLOSED, 3, close_code=4429).kind is Kind.RATE_LIMITED
    assert outcomes.of_end(Ended.CLOSED, 3, close_code=4401).kind is Kind.CONNECTION_CLOSED
    assert outcomes.of_end(Ended.CLOSED, 3, close_code=1000).kind is Kind.CLOSED
    assert outcomes.of_end(Ended.CLOSED, 3, close_code=1001).kind is Kind.CLOSED
    assert outcomes.of_end(Ended.STALLED, 3, close_code=4005).kind is Kind.STALLED
