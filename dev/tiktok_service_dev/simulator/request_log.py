"""What clients sent: path, query, cookies and headers of the last requests (for tests and demos).

TikTok sees a client's cookies, query parameters (locale, session flags) and headers; the
simulator keeps the same for its most recent requests so a test can check what a client
sent instead of trusting what it meant to send. Bounded: the oldest entries are dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MAX_ENTRIES = 1_000


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    host: str
    path: str
    query: dict[str, str]
    cookies: dict[str, str]
    headers: dict[str, str]


class RequestLog:
    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=size)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(list(self._entries))

    def matching(self, path_prefix: str) -> list[RecordedRequest]:
        return [entry for entry in self if entry.path.startswith(path_prefix)]

    def record(self, request: web.Request) -> None:
        self._entries.append(
            RecordedRequest(
                method=request.method,
                host=request.host,
                path=request.path,
                query=dict(request.query),
                cookies=dict(request.cookies),
                headers=dict(request.headers),
            )
        )


REQUEST_LOG_KEY = web.AppKey("request_log", RequestLog)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def record_requests(request: web.Request, handler: Handler) -> Any:
    if not request.path.startswith("/_sim/"):
        request.app[REQUEST_LOG_KEY].record(request)
    return await handler(request)
