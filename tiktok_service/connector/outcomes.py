"""What to do after a connection attempt ends: a pure decision over the outcome.

Kept apart from the runner so the whole policy (which errors are retried, which end the
process and with which exit code) is unit-tested without a socket.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from enum import StrEnum

import httpx
from TikTokLive.client.errors import (
    AgeRestrictedError,
    SignatureRateLimitError,
    UserNotFoundError,
    UserOfflineError,
    WebcastBlockedError,
)
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tiktok_service.domain import backoff
from tiktok_service.domain.exit_codes import ExitCode


class Ended(StrEnum):
    """How a connection that was established came to an end."""

    LIVE_END = "live_end"
    CLOSED = "closed"  # the server closed the socket cleanly
    STALLED = "stalled"  # no traffic for too long; we closed it
    STOPPED = "stopped"  # we were asked to stop


class Action(StrEnum):
    RECONNECT = "reconnect"
    WAIT_FOR_LIVE = "wait_for_live"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    delay_s: float = 0.0
    exit_code: ExitCode = ExitCode.STOPPED


@dataclass(frozen=True, slots=True)
class Policy:
    wait_for_live: bool
    live_poll_interval_s: float
    backoff_base_s: float
    backoff_cap_s: float
    max_reconnects: int  # 0 = unlimited


def retry_after_s(exc: SignatureRateLimitError) -> float:
    """The sign server's explicit delay; the library's own accessor fails on missing headers."""
    response = exc.response
    headers = response.headers if response is not None else {}
    for name in ("Retry-After", "RateLimit-Reset", "RateLimit-Remaining"):
        value = headers.get(name)
        if value and value.strip().isdigit():
            return float(value)
    return 0.0


def after_end(ended: Ended, policy: Policy) -> Decision:
    """After a connection that was up."""
    if ended is Ended.STOPPED:
        return Decision(Action.EXIT, "stopped", exit_code=ExitCode.STOPPED)
    if ended is Ended.LIVE_END:
        if policy.wait_for_live:
            return Decision(Action.WAIT_FOR_LIVE, "live_end", delay_s=policy.live_poll_interval_s)
        return Decision(Action.EXIT, "live_end", exit_code=ExitCode.LIVE_ENDED)
    # A dropped or stalled socket after a good connection: reconnect at once; the history
    # TikTok replays on connect covers the gap and duplicates are filtered.
    return Decision(Action.RECONNECT, ended.value, delay_s=0.0)


def after_error(exc: BaseException, attempt: int, policy: Policy, rng: random.Random) -> Decision:
    """After a failed attempt (`attempt` = consecutive failures so far, 1-based)."""
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    if isinstance(exc, UserNotFoundError):
        return Decision(Action.EXIT, "user_not_found", exit_code=ExitCode.USER_NOT_FOUND)
    if isinstance(exc, UserOfflineError):
        if policy.wait_for_live:
            return Decision(Action.WAIT_FOR_LIVE, "offline", delay_s=policy.live_poll_interval_s)
        return Decision(Action.EXIT, "offline", exit_code=ExitCode.USER_OFFLINE)
    if isinstance(exc, AgeRestrictedError):
        return Decision(Action.EXIT, "age_restricted", exit_code=ExitCode.BLOCKED)
    if policy.max_reconnects and attempt > policy.max_reconnects:
        code = ExitCode.BLOCKED if isinstance(exc, WebcastBlockedError) else ExitCode.FAILED
        return Decision(Action.EXIT, f"retries_exhausted:{reason_of(exc)}", exit_code=code)
    floor = retry_after_s(exc) if isinstance(exc, SignatureRateLimitError) else 0.0
    delay = backoff.next_delay(attempt, base=policy.backoff_base_s, cap=policy.backoff_cap_s, rng=rng, floor=floor)
    return Decision(Action.RECONNECT, reason_of(exc), delay_s=delay)


def reason_of(exc: BaseException) -> str:
    """A short, bounded label for metrics and status."""
    if isinstance(exc, SignatureRateLimitError):
        return "rate_limited"
    if isinstance(exc, WebcastBlockedError):
        return "blocked"
    if isinstance(exc, ConnectionClosed):
        return "connection_closed"
    if isinstance(exc, InvalidHandshake):
        return "ws_rejected"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.HTTPError | OSError):
        return "network"
    if isinstance(exc, FailedParseRoomIdError):
        return "room_lookup"
    return "error"
