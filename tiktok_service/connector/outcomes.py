"""What to do after a connection attempt ends: a pure decision over the outcome.

Kept apart from the runner so the whole policy (which failures are retried and how often,
which end the process and with which exit code, when to rotate the proxy) is unit-tested
without a socket. Two steps:

* `classify` names what happened (a bounded `Kind`, also the status reason and metric label)
  from the exception the library raised, or `of_end` from how an established socket ended;
* `decide` turns that, the streak of failures so far and the `Policy` into a `Decision`.

Failures told apart (see the README's failure table):

* TikTok answered a **captcha/verification page** (its verify page in place of the live page,
  or its verify JSON, `{"code": "10000", "type": "verify", ...}`, in place of the API's answer):
  only that evidence, recognised by our room-id routes (`verify_pages.CaptchaRequired`), is a
  captcha; a lookup whose last answer is a user without a room is "user not found";
* **user not found** is retried a few times: "Do not raise on UserNotFoundError as this can be
  a captcha issue" (TikTokLive's `TikTokLiveClient.start`);
* **blocked**: the WebSocket upgrade answered 200/400 with `Handshake-Msg` (`WebcastBlockedError`);
* **age-restricted**: room info withheld from anonymous viewers (`AgeRestrictedError`, raised by
  our room check, `room_check.py`);
* **sign server**: 429 (whatever its headers: `sign_quota.SignQuotaSpent`) with the reset it
  announces (`Retry-After`, `RateLimit-Reset`): waited for
  in-process when short, else exit 16 so the operator waits and the pod's memory is freed;
  a rejected API key is a configuration error;
* **proxy**: the proxy could not be opened (python_socks errors, `httpx.ProxyError`, or a refused
  TCP connect when every connection goes through a proxy): rotate and retry, then exit 17;
* **errors of the live check** (`MissingRoomIdInResponse`, which the library raises for anything
  that went wrong, and `FailedFetchRoomInfoError`) are named by the error they hide: TikTok's 429,
  a timeout, the proxy, the network; only what is left is a room lookup failure;
* a socket that **closes cleanly again and again** counts as a failure unless it lived
  `healthy_after_s`: it backs off instead of reconnecting at once forever.
* **fenced**: a newer connector claimed the Livestream (`fencing`): exit 18 at once, whatever
  the streak; it is no failure of this connector and the operator does not count it.

Close codes: TikTokLive 7 does not use EulerStream's WebSocket API (it asks the sign server
for a signed URL over HTTP, `/webcast/fetch`, and connects to TikTok's push server itself), so a
close code comes from TikTok and is never final on its own. The retryable meanings of the codes
EulerStream documents (`ClientCloseCode`, https://www.eulerstream.com/docs/api/client-sdks/websocket-sdk/close-codes)
are kept: 4429 backs off as rate limited, 4555 reconnects like a session cap, 4006 like a stall.
Every other code (4400, 4401, 4403, 4404, 4005, ...) is a dropped connection retried with
backoff: after a real live end the next attempt's live check tells the truth.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

import httpx
import python_socks
from TikTokLive.client.errors import (
    AgeRestrictedError,
    AuthenticatedWebSocketConnectionError,
    InitialCursorMissingError,
    PremiumEndpointError,
    SignAPIError,
    SignatureRateLimitError,
    UserNotFoundError,
    UserOfflineError,
    WebcastBlockedError,
    WebsocketURLMissingError,
)
from TikTokLive.client.web.routes.fetch_is_live import MissingRoomIdInResponse
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError
from TikTokLive.client.web.routes.fetch_room_info import FailedFetchRoomInfoError
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tiktok_service.connector.sign_quota import SignQuotaSpent
from tiktok_service.connector.verify_pages import CaptchaRequired
from tiktok_service.domain import backoff
from tiktok_service.domain.exit_codes import ExitCode


class Ended(StrEnum):
    """How a connection that was established came to an end."""

    LIVE_END = "live_end"
    CLOSED = "closed"  # the server closed the socket cleanly
    STALLED = "stalled"  # no traffic for too long; we closed it
    STOPPED = "stopped"  # we were asked to stop


class Kind(StrEnum):
    """What happened, as a short bounded label (status reason, metric label)."""

    STOPPED = "stopped"
    FENCED = "fenced"  # a newer connector claimed the Livestream: this one must stop writing
    LIVE_END = "live_end"
    CLOSED = "closed"  # closed cleanly by the server
    STALLED = "stalled"  # no traffic; we closed it (or the server's no-messages timeout)
    SESSION_CAP = "session_cap"  # the server's socket lifetime was reached: reconnect at once if it held
    OFFLINE = "offline"
    USER_NOT_FOUND = "user_not_found"
    CAPTCHA = "captcha"
    AGE_RESTRICTED = "age_restricted"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate_limited"  # the sign server's quota (429, or too many connections)
    TIKTOK_RATE_LIMITED = "tiktok_rate_limited"  # TikTok itself answered 429: this egress IP is throttled
    SIGN_REJECTED = "sign_rejected"  # the sign server refuses our API key / plan
    SIGN_ERROR = "sign_error"  # the sign server failed (5xx, empty answer, unreachable)
    PROXY_ERROR = "proxy_error"
    WS_REJECTED = "ws_rejected"  # the WebSocket upgrade failed otherwise (403, 5xx, ...)
    CONNECTION_CLOSED = "connection_closed"  # the socket broke (no close frame, error code)
    TIMEOUT = "timeout"
    NETWORK = "network"
    ROOM_LOOKUP = "room_lookup"
    CONFIG = "config"
    ERROR = "error"


class Action(StrEnum):
    RECONNECT = "reconnect"
    WAIT_FOR_LIVE = "wait_for_live"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's end: what happened and how long its socket was up (None: never opened)."""

    kind: Kind
    lived_s: float | None = None
    retry_at: float | None = None  # unix time a server announced for the next try


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    delay_s: float = 0.0
    exit_code: ExitCode = ExitCode.STOPPED
    rotate_proxy: bool = False  # the next attempt should use the next proxy of the list
    retry_at: float | None = None  # with EXIT: when the server said a new attempt may succeed


@dataclass(frozen=True, slots=True)
class Policy:
    wait_for_live: bool
    live_poll_interval_s: float
    backoff_base_s: float
    backoff_cap_s: float
    max_reconnects: int  # 0 = unlimited
    healthy_after_s: float = 30.0  # a connection that lived this long resets the failure count
    not_found_attempts: int = 4  # "user not found" this many times in a row -> exit 11
    captcha_attempts: int = 4  # captcha pages this many times in a row -> exit 14
    blocked_attempts: int = 2  # rejected handshakes in a row -> exit 13 (more with a proxy list)
    proxy_attempts: int = 6  # proxy failures in a row -> exit 17
    quota_wait_max_s: float = 300.0  # wait longer than this for a sign quota reset -> exit 16
    proxied: bool = False  # every connection goes through a proxy: a refused connect is the proxy's


@dataclass(frozen=True, slots=True)
class Streak:
    """Consecutive failures so far, and how many of them in a row were of the last kind."""

    failures: int = 0
    kind: Kind | None = None
    same: int = 0

    def after(self, kind: Kind) -> Streak:
        return Streak(self.failures + 1, kind, self.same + 1 if kind is self.kind else 1)


@dataclass(frozen=True, slots=True)
class _Rule:
    exit_code: ExitCode  # when this kind's retries are spent (or at once)
    attempts: str | None = None  # Policy field bounding consecutive failures of this kind
    at_once: bool = False
    rotate_proxy: bool = False


_RULES: Final[dict[Kind, _Rule]] = {
    Kind.AGE_RESTRICTED: _Rule(ExitCode.AGE_RESTRICTED, at_once=True),
    Kind.CONFIG: _Rule(ExitCode.CONFIG, at_once=True),
    Kind.SIGN_REJECTED: _Rule(ExitCode.CONFIG, at_once=True),
    Kind.USER_NOT_FOUND: _Rule(ExitCode.USER_NOT_FOUND, "not_found_attempts", rotate_proxy=True),
    Kind.CAPTCHA: _Rule(ExitCode.CAPTCHA, "captcha_attempts", rotate_proxy=True),
    Kind.BLOCKED: _Rule(ExitCode.BLOCKED, "blocked_attempts", rotate_proxy=True),
    Kind.PROXY_ERROR: _Rule(ExitCode.PROXY, "proxy_attempts", rotate_proxy=True),
    Kind.WS_REJECTED: _Rule(ExitCode.FAILED, rotate_proxy=True),
    Kind.TIMEOUT: _Rule(ExitCode.FAILED, rotate_proxy=True),
    Kind.NETWORK: _Rule(ExitCode.FAILED, rotate_proxy=True),
    Kind.TIKTOK_RATE_LIMITED: _Rule(ExitCode.FAILED, rotate_proxy=True),
    Kind.ROOM_LOOKUP: _Rule(ExitCode.FAILED, rotate_proxy=True),  # empty lookups: block and captcha pages look so
    Kind.RATE_LIMITED: _Rule(ExitCode.SIGN_QUOTA),
}
_DEFAULT_RULE: Final = _Rule(ExitCode.FAILED)

#: Close codes whose meaning is kept (EulerStream's `ClientCloseCode`, euler-websocket-sdk 0.0.6);
#: any other code is CONNECTION_CLOSED (retried with backoff), never final on its own.
CLOSE_CODES: Final[dict[int, Kind]] = {
    4006: Kind.STALLED,  # NO_MESSAGES_TIMEOUT: no messages in the timeout period
    4429: Kind.RATE_LIMITED,  # TOO_MANY_CONNECTIONS: too many connections, or connecting too quickly
    4555: Kind.SESSION_CAP,  # MAX_LIFETIME_EXCEEDED: the socket exceeded its lifetime
}
#: Codes of a socket that ended normally (RFC 6455 normal closure, going away).
_NORMAL_CLOSES: Final = (1000, 1001)

_PROXY_ERRORS: Final = (
    python_socks.ProxyError,
    python_socks.ProxyConnectionError,
    python_socks.ProxyTimeoutError,
    httpx.ProxyError,
)
_LOOKUP_ERRORS: Final = (FailedParseRoomIdError, UserNotFoundError)
#: Errors the library raises in place of the one that happened (bare `except`, `raise ... from`).
_MASKING_ERRORS: Final = (MissingRoomIdInResponse, FailedFetchRoomInfoError)
_CHAIN_DEPTH: Final = 8


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from (bounded: chains can be cyclic)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def close_code(exc: ConnectionClosed) -> int | None:
    """The close code the server sent (None when the socket broke without a close frame)."""
    return exc.rcvd.code if exc.rcvd is not None else None


def _sign_kind(exc: SignAPIError, now: float) -> tuple[Kind, float | None]:
    if isinstance(exc, SignatureRateLimitError | SignQuotaSpent):
        headers = exc.response.headers if exc.response is not None else httpx.Headers()
        return Kind.RATE_LIMITED, backoff.announced_reset(headers, now)
    if isinstance(exc, PremiumEndpointError):
        return Kind.SIGN_REJECTED, None
    if isinstance(exc, AuthenticatedWebSocketConnectionError):
        return Kind.CONFIG, None
    status = exc.response.status_code if exc.response is not None else None
    if status in (401, 403):
        return Kind.SIGN_REJECTED, None
    return Kind.SIGN_ERROR, None


def classify(exc: BaseException, *, lived_s: float | None = None, now: float, proxied: bool = False) -> Outcome:
    """Name a failed attempt from the exception the library raised (pure)."""
    kind, retry_at = _kind_of(exc, now, proxied)
    return Outcome(kind, lived_s, retry_at)


def _kind_of(exc: BaseException, now: float, proxied: bool) -> tuple[Kind, float | None]:
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    chain = list(_chain(exc))
    if any(isinstance(link, _PROXY_ERRORS) for link in chain):
        return Kind.PROXY_ERROR, None
    if isinstance(exc, SignAPIError):
        return _sign_kind(exc, now)
    if isinstance(exc, AgeRestrictedError):
        return Kind.AGE_RESTRICTED, None
    if isinstance(exc, UserOfflineError):
        return Kind.OFFLINE, None
    if isinstance(exc, CaptchaRequired):
        return Kind.CAPTCHA, None  # TikTok's last answer was its verify page
    if isinstance(exc, UserNotFoundError | FailedParseRoomIdError):
        return Kind.USER_NOT_FOUND, None  # TikTok's last answer: no such user, or no room
    if any(isinstance(link, CaptchaRequired) for link in chain):
        return Kind.CAPTCHA, None  # a verify page, then a lookup that failed otherwise
    if isinstance(exc, WebcastBlockedError | InitialCursorMissingError | WebsocketURLMissingError):
        return Kind.BLOCKED, None
    if isinstance(exc, ConnectionClosed):
        return close_kind(close_code(exc)), None
    if isinstance(exc, InvalidHandshake):
        return Kind.WS_REJECTED, None
    if isinstance(exc, _MASKING_ERRORS):
        # The live check (or room info) hides what went wrong: name it by the linked errors.
        for link in chain[1:]:
            hidden = _transport_kind(link, proxied)
            if hidden is not None:
                return hidden, None
        return Kind.ROOM_LOOKUP, None
    if isinstance(exc, KeyError | ValueError | TypeError) and any(isinstance(link, _LOOKUP_ERRORS) for link in chain):
        return Kind.ROOM_LOOKUP, None  # the lookup got an answer it cannot read, and no verify page
    return _transport_kind(exc, proxied) or Kind.ERROR, None


def _transport_kind(exc: BaseException, proxied: bool) -> Kind | None:
    """What went wrong on the way to TikTok, if `exc` says (None: not a transport error)."""
    if isinstance(exc, _PROXY_ERRORS):
        return Kind.PROXY_ERROR
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return Kind.TIMEOUT
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 429:
        return Kind.TIKTOK_RATE_LIMITED
    if proxied and isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return Kind.PROXY_ERROR  # every TCP connect goes to the proxy: it is the one refusing
    if isinstance(exc, httpx.HTTPError | OSError):
        return Kind.NETWORK
    return None


def close_kind(code: int | None) -> Kind:
    """A close code's meaning: a kept retryable one, or a dropped connection (see the module docstring)."""
    if code is None:
        return Kind.CONNECTION_CLOSED
    return CLOSE_CODES.get(code, Kind.CONNECTION_CLOSED)


def ends_pinned_room(kind: Kind) -> bool:
    """Whether a configured room id is stale after `kind`: TikTok gives each LIVE a new room id."""
    return kind in (Kind.LIVE_END, Kind.OFFLINE)


def of_end(ended: Ended, lived_s: float | None, close_code: int | None = None) -> Outcome:
    """An established connection's end, as an outcome; a documented close code names it better."""
    if ended is Ended.CLOSED and close_code is not None and close_code not in _NORMAL_CLOSES:
        return Outcome(close_kind(close_code), lived_s)
    return Outcome(Kind(ended.value), lived_s)


def decide(
    outcome: Outcome, streak: Streak, policy: Policy, rng: random.Random, *, now: float
) -> tuple[Decision, Streak]:
    """What to do next, and the streak of failures to carry to the next attempt."""
    kind = outcome.kind
    if kind is Kind.STOPPED:
        return Decision(Action.EXIT, kind.value, exit_code=ExitCode.STOPPED), streak
    if kind is Kind.FENCED:
        return Decision(Action.EXIT, kind.value, exit_code=ExitCode.FENCED), streak
    healthy = backoff.lived_long(outcome.lived_s, policy.healthy_after_s)
    if healthy:
        streak = Streak()  # a connection that held wipes the slate
    if kind is Kind.LIVE_END:
        if policy.wait_for_live:
            return Decision(Action.WAIT_FOR_LIVE, kind.value, delay_s=policy.live_poll_interval_s), Streak()
        return Decision(Action.EXIT, kind.value, exit_code=ExitCode.LIVE_ENDED), streak
    if kind is Kind.OFFLINE:
        if policy.wait_for_live:
            return Decision(Action.WAIT_FOR_LIVE, kind.value, delay_s=policy.live_poll_interval_s), Streak()
        return Decision(Action.EXIT, kind.value, exit_code=ExitCode.USER_OFFLINE), streak
    if healthy and kind in (Kind.CLOSED, Kind.STALLED, Kind.SESSION_CAP):
        # A good connection ended: reconnect at once; TikTok's replayed history covers the
        # gap and the duplicate filter drops what was already published. A short one is a
        # failure like any other (below): it backs off instead of spinning.
        return Decision(Action.RECONNECT, kind.value), Streak()
    streak = streak.after(kind)
    rule = _RULES.get(kind, _DEFAULT_RULE)
    if rule.at_once:
        return Decision(Action.EXIT, kind.value, exit_code=rule.exit_code), streak
    floor = 0.0
    if kind is Kind.RATE_LIMITED and outcome.retry_at is not None:
        floor = max(0.0, outcome.retry_at - now)
        if floor > policy.quota_wait_max_s:
            return Decision(Action.EXIT, kind.value, exit_code=ExitCode.SIGN_QUOTA, retry_at=outcome.retry_at), streak
    limit = int(getattr(policy, rule.attempts)) if rule.attempts else 0
    if limit and streak.same >= limit:
        return Decision(Action.EXIT, kind.value, exit_code=rule.exit_code), streak
    if policy.max_reconnects and streak.failures > policy.max_reconnects:
        code = rule.exit_code if rule.attempts else ExitCode.FAILED
        return Decision(Action.EXIT, f"retries_exhausted:{kind.value}", exit_code=code), streak
    delay = backoff.next_delay(
        streak.failures, base=policy.backoff_base_s, cap=policy.backoff_cap_s, rng=rng, floor=floor
    )
    return Decision(Action.RECONNECT, kind.value, delay_s=delay, rotate_proxy=rule.rotate_proxy), streak


def with_proxy(policy: Policy, proxies: int) -> Policy:
    """The policy for a list of `proxies`: a block or a dead proxy is tried on each of them."""
    if proxies <= 0:
        return policy
    return replace(
        policy,
        proxied=True,
        blocked_attempts=max(policy.blocked_attempts, proxies + 1),
        proxy_attempts=max(policy.proxy_attempts, 2 * proxies),
    )
