"""Event loops for services that tests run in threads, closed with none of their connections open.

`asyncio.run` closes its loop as soon as the main coroutine and the remaining tasks are done.
A connection that is still closing at that moment stays open for good: its socket is only
closed by a callback of the loop, which never runs again. With TLS this is routine, not rare:
asyncio closes a TLS connection's socket only after the peer has answered the close_notify
alert, and aiohttp does not wait for the connections it closes when a response is released
(for example the kopf watch streams cancelled on shutdown). A loop closed before the API
server answers leaks the socket, and Python reports the unclosed transport when it is
collected - possibly much later, in another test, as an unraisable exception.

`TrackingLoop` remembers every outgoing connection made on it; `shut_down` ends a loop the
way `asyncio.run` does and, before closing it, lets those connections finish closing (up
to a deadline) and aborts the ones that did not.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_DEADLINE_S: Final = 5.0
_POLL_S: Final = 0.01


class TrackingLoop(asyncio.SelectorEventLoop):
    """A selector loop that remembers (weakly) the transport of every connection it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def create_connection(self, *args: Any, **kwargs: Any) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:  # type: ignore[override]
        transport, protocol = await super().create_connection(*args, **kwargs)
        self.transports.add(transport)
        return transport, protocol

    def open_connections(self) -> list[asyncio.BaseTransport]:
        """Transports whose socket is not closed yet (a TLS one may be closing: `is_closing()`)."""
        return [transport for transport in list(self.transports) if _socket_open(transport)]


def _socket_open(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.fileno() != -1


async def close_connections(loop: TrackingLoop, *, deadline_s: float = CLOSE_DEADLINE_S) -> int:
    """Wait until every connection of `loop` is closed; abort those still open at the deadline.

    Connections nobody closed are closed here too (their owner is gone). Returns how many
    had to be aborted.
    """
    for transport in loop.open_connections():
        if not transport.is_closing():
            transport.close()
    # Polled: asyncio signals no event when a transport's socket is finally closed.
    until = loop.time() + deadline_s
    while loop.open_connections() and loop.time() < until:  # noqa: ASYNC110
        await asyncio.sleep(_POLL_S)
    stuck = loop.open_connections()
    for transport in stuck:
        log.warning("connection still closing at loop shutdown; aborting it", extra={"transport": repr(transport)})
        transport.abort()  # type: ignore[attr-defined]
    while loop.open_connections():  # noqa: ASYNC110 - an abort closes the socket on the next iteration
        await asyncio.sleep(0)
    return len(stuck)


async def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every other task of the loop and wait for them (what `asyncio.run` does on exit)."""
    current = asyncio.current_task(loop)
    tasks = [task for task in asyncio.all_tasks(loop) if task is not current]
    for task in tasks:
        task.cancel()
    for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            loop.call_exception_handler(
                {"message": "task failed during loop shutdown", "exception": result, "task": task}
            )


async def finish(loop: TrackingLoop) -> None:
    """Run on `loop` before it stops: the remaining tasks cancelled, generators and executor
    shut down, and every connection closed."""
    await _cancel_tasks(loop)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()
    await close_connections(loop)


def shut_down(loop: TrackingLoop) -> None:
    """`finish` a loop that is not running, then close it."""
    try:
        loop.run_until_complete(finish(loop))
    finally:
        loop.close()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on a `TrackingLoop`: no connection outlives the loop."""
    loop = TrackingLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        shut_down(loop)
