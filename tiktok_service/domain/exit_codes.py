"""Connector exit codes: how a connector pod tells the operator why it stopped.

The operator reads the container's exit code (and the final status in Redis); each code
maps to one reaction, so they are part of the product's contract and documented in the README.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    STOPPED = 0  # SIGTERM/SIGINT: flushed and closed on request
    FAILED = 1  # unrecoverable error (bug, retries exhausted); restart with backoff
    CONFIG = 2  # invalid configuration; restarting will not help
    LIVE_ENDED = 10  # the streamer ended the LIVE
    USER_NOT_FOUND = 11  # no such TikTok user (or the user cannot go LIVE)
    USER_OFFLINE = 12  # the user is not live and waiting was not requested
    BLOCKED = 13  # TikTok or the sign server refuses us (blocked, bad API key, age restriction)
