"""A 429 from the sign server is a spent quota, whatever headers came with it.

TikTokLive's `FetchSignedWebSocketRoute` detects the 429 and raises `SignatureRateLimitError`,
whose constructor reads the wait from `int(headers.get("RateLimit-Remaining"))`: a 429 without
that header (only `Retry-After`, or no header at all) raises a `TypeError` instead, which would
be classified as a generic error (no quota wait, no exit 16). `install` wraps the client's sign
fetch so that such a failure is raised as `SignQuotaSpent`, carrying the 429 response so the
announced reset (`Retry-After`, `RateLimit-Reset`) is read from it as for the library's error.
"""

from __future__ import annotations

from typing import Any

import httpx
from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import SignAPIError, SignatureRateLimitError


class SignQuotaSpent(SignAPIError):  # type: ignore[misc]
    """The sign server answered 429 (its quota is spent); `response` holds its headers."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            SignAPIError.ErrorReason.RATE_LIMIT, "the sign server answered 429 (quota spent)", response=response
        )


class QuotaAwareSignFetch:
    """The client's `fetch_signed_websocket`, with any failure after a 429 raised as `SignQuotaSpent`."""

    def __init__(self, route: Any, http: httpx.AsyncClient) -> None:
        self._route = route
        self._http = http

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        answers: list[httpx.Response] = []

        async def remember(response: httpx.Response) -> None:
            answers.append(response)

        hooks = self._http.event_hooks["response"]
        hooks.append(remember)
        try:
            return await self._route(*args, **kwargs)
        except SignatureRateLimitError:
            raise
        except Exception as exc:
            if answers and answers[-1].status_code == 429:
                raise SignQuotaSpent(answers[-1]) from exc
            raise
        finally:
            hooks.remove(remember)


def install(client: TikTokLiveClient) -> None:
    """Wrap `client`'s sign fetch (call after the transport is installed)."""
    http = client.web.signer.sdk_client.get_async_httpx_client()
    client.web.fetch_signed_websocket = QuotaAwareSignFetch(client.web.fetch_signed_websocket, http)
