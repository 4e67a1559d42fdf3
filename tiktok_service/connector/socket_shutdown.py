"""Closing the TikTok socket on shutdown within a bound, whatever the library's socket is doing.

`TikTokLiveClient.disconnect()` runs the websockets closing handshake (`close()`), then awaits
the library's receive loop. Neither is bounded in a way a pod's grace period can rely on:

- websockets (legacy protocol) queues at most `max_queue` received messages; once the reader
  stops taking them (it is busy, or gone: the attempt ended), the transfer task waits for room
  in the queue and no longer reads the socket, so the peer's close frame is never seen;
- `close()` then waits `close_timeout` for it, the closing task up to 3 more `close_timeout`s
  for the TCP close of a peer that does not answer, and a reader sending an ack or heartbeat
  meanwhile waits for that whole handshake (`ensure_open`): 20-25 s with nothing logged;
- a `disconnect()` task left running when the attempt has ended keeps the socket in that state
  until `asyncio.run` cancels it at exit, adding its own wait there.

`close(client, protocol, timeout_s)` asks for the clean close and, when it has not happened
within `timeout_s`, says so in the log and *abandons* the socket: the transfer task is
cancelled and the TCP connection aborted (`fail_connection` + `transport.abort()`), which ends
the library's receive loop at once. TikTok sees the socket go as after a network loss.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from TikTokLive import TikTokLiveClient

log = logging.getLogger(__name__)

#: Longest wait for TikTok's answer to our close frame on shutdown (the pod's grace period
#: must also hold the drain to Redis and the final status).
CLOSE_TIMEOUT_S = 2.0
#: After abandoning the socket, longest wait for the library's receive loop to end.
LOOP_END_TIMEOUT_S = 1.0


def is_closed(protocol: Any) -> bool:
    """True when `protocol` (a websockets protocol, or None: never opened) has no TCP connection left."""
    if protocol is None:
        return True
    waiter = getattr(protocol, "connection_lost_waiter", None)
    return waiter is None or bool(waiter.done())


def abandon(protocol: Any) -> None:
    """End `protocol`'s connection now: no more reading, TCP connection aborted (no handshake)."""
    if protocol is None:
        return
    try:
        protocol.fail_connection()
    except Exception as exc:  # a protocol in a state we do not know: the abort below still applies
        log.debug("fail_connection raised", extra={"error": repr(exc)})
    transport = getattr(protocol, "transport", None)
    if transport is not None:
        transport.abort()


async def close(client: TikTokLiveClient, protocol: Any, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Close `client`'s socket, abandoning it after `timeout_s`; True if it closed cleanly.

    The library's `disconnect()` runs in its own task and is not cancelled at the timeout:
    websockets' `close()` swallows a cancel and goes on waiting for the TCP close (so
    `asyncio.wait_for` would not bound it). Abandoning the socket is what ends it. The
    library's receive loop (`client._event_loop_task`) is cancelled if it has still not ended
    `LOOP_END_TIMEOUT_S` later. Never raises (unless the caller itself is cancelled), also when
    called again after such a cancel.
    """
    disconnecting = asyncio.ensure_future(client.disconnect())
    done, _ = await asyncio.wait({disconnecting}, timeout=timeout_s)
    if done:
        # Cancelled: the library awaited a receive loop an earlier close had cancelled
        # (`.exception()` would raise CancelledError here).
        error = None if disconnecting.cancelled() else disconnecting.exception()
        if error is None and is_closed(protocol):
            return True
        if error is not None:
            log.warning("closing the TikTok socket failed; abandoning it", extra={"error": repr(error)[:300]})
    else:
        log.warning(
            "the TikTok socket did not close in time; abandoning it",
            extra={"timeout_s": timeout_s, "socket_closed": is_closed(protocol)},
        )
    abandon(protocol)
    loop_task: asyncio.Future[Any] | None = getattr(client, "_event_loop_task", None)
    pending = {t for t in (disconnecting, loop_task) if t is not None and not t.done()}
    if pending:
        _, late = await asyncio.wait(pending, timeout=LOOP_END_TIMEOUT_S)
        if late:
            log.warning(
                "the TikTok receive loop did not end after the abandon; cancelling it",
                extra={"timeout_s": LOOP_END_TIMEOUT_S},
            )
            for task in late:
                task.cancel()
    return False
