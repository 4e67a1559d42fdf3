"""Connector exit codes: how a connector pod tells the operator why it stopped.

The operator reads the container's exit code (and the final status in Redis); each code
maps to one reaction, so they are part of the product's contract and documented in the README
(the failure table). A code is only used once the connector's own retries are spent: a user
reported as not found, a captcha page, a blocked handshake or a dead proxy are first retried
in-process with backoff (captcha pages look like "not found"; another proxy may pass).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    STOPPED = 0  # SIGTERM/SIGINT: flushed and closed on request
    FAILED = 1  # unexpected error, or retries exhausted; restart with backoff
    CONFIG = 2  # invalid configuration (incl. a sign server rejecting the API key); a restart will not help
    LIVE_ENDED = 10  # the streamer ended the LIVE
    USER_NOT_FOUND = 11  # no such TikTok user (or the user cannot go LIVE), answered several times in a row
    USER_OFFLINE = 12  # the user is not live and waiting was not requested
    BLOCKED = 13  # TikTok rejected the WebSocket handshake (200/400 with Handshake-Msg): detected
    CAPTCHA = 14  # TikTok answers a captcha/verification page instead of the room; restart later
    AGE_RESTRICTED = 15  # the LIVE is age-restricted and no logged-in session was accepted
    SIGN_QUOTA = 16  # the sign server's quota is spent until a reset it announced (final status: next_retry_at_ms)
    PROXY = 17  # the configured proxies could not be opened (refused, auth, timeout)
    FENCED = 18  # a newer connector claimed this Livestream: this one stopped writing (not a failure)
