"""Proxy lists: parsing, redaction and rotation (pure).

A connector may be given several egress proxies (one URL per line, from a Secret). The
URLs carry credentials, so this module is the one place that holds them in clear: a
`ProxyEndpoint` prints as its redacted form (`http://user:***@host:port`), and a list that
fails to parse says which line is wrong and why, never what the line holds.

Rotation: connectors of many rooms often share one list (the operator-wide default), so
each starts at a stable position derived from its livestream id, spreading rooms over the
egress IPs; a connection that is blocked, rate-limited or fails to open moves it to the
next proxy (see `tiktok_service.connector.proxy_failover` for which failures do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

#: Schemes both of TikTokLive's transports understand: httpx (web requests) and python-socks
#: (the WebSocket). `socks5h` is accepted as a spelling of `socks5`: both resolve names on the
#: proxy (python-socks and httpx send the host name, not an address).
SCHEMES: Final = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}
MAX_PROXIES: Final = 256
REDACTED: Final = "***"


class ProxyListError(ValueError):
    """A proxy list that cannot be used; the message never contains a URL or a credential."""


@dataclass(frozen=True, slots=True)
class ProxyEndpoint:
    """One proxy. `repr`/`str` are redacted; `url` holds the credentials (give it only to the client)."""

    scheme: str  # "http" (HTTP CONNECT) or "socks5"
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """The full URL, credentials included (percent-encoded): for the HTTP/WebSocket clients only."""
        return self._build(self.password)

    @property
    def redacted(self) -> str:
        """`scheme://user:***@host:port`: safe for logs, status, events and metrics."""
        return self._build(REDACTED if self.password is not None else None, quote_password=False)

    @property
    def secrets(self) -> frozenset[str]:
        """Strings that must never be shown: the password, raw and percent-encoded."""
        if not self.password:
            return frozenset()
        return frozenset({self.password, quote(self.password, safe="")})

    def _build(self, password: str | None, *, quote_password: bool = True) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if password is not None:
                auth += ":" + (quote(password, safe="") if quote_password else password)
            auth += "@"
        return f"{self.scheme}://{auth}{host}:{self.port}"

    def __repr__(self) -> str:
        return f"ProxyEndpoint({self.redacted})"

    def __str__(self) -> str:
        return self.redacted


def parse_proxy(text: str, *, where: str = "proxy") -> ProxyEndpoint:
    """One proxy URL: `http://[user[:pass]@]host:port` or `socks5://...`."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ProxyListError(f"{where}: not a URL with a valid port") from None
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ProxyListError(f"{where}: the scheme must be http:// (HTTP CONNECT) or socks5://")
    if not parts.hostname:
        raise ProxyListError(f"{where}: no host")
    if port is None or not 0 < port < 65536:
        raise ProxyListError(f"{where}: an explicit port is required")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyListError(f"{where}: a proxy URL has no path, query or fragment")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyEndpoint(scheme, parts.hostname, port, username or None, password)


def parse_proxies(text: str) -> tuple[ProxyEndpoint, ...]:
    """A proxy list: one URL per line; blank lines and lines starting with `#` are ignored."""
    proxies: list[ProxyEndpoint] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        proxies.append(parse_proxy(line, where=f"proxy on line {number}"))
    if len(proxies) > MAX_PROXIES:
        raise ProxyListError(f"at most {MAX_PROXIES} proxies per list, got {len(proxies)}")
    return tuple(proxies)


def start_index(key: str, count: int) -> int:
    """A stable position in a list of `count` proxies for `key` (the livestream id)."""
    if count <= 0:
        return 0
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


class ProxyRotation:
    """Which proxy the next connection uses; `rotate()` moves to the next one, wrapping around."""

    __slots__ = ("_index", "_proxies", "rotations")

    def __init__(self, proxies: Sequence[ProxyEndpoint], *, start: int = 0) -> None:
        self._proxies = tuple(proxies)
        self._index = start % len(self._proxies) if self._proxies else 0
        self.rotations = 0

    @property
    def current(self) -> ProxyEndpoint | None:
        return self._proxies[self._index] if self._proxies else None

    @property
    def index(self) -> int:
        return self._index

    def __len__(self) -> int:
        return len(self._proxies)

    def rotate(self) -> ProxyEndpoint | None:
        """Move to the next proxy (a list of one stays where it is) and return it."""
        if len(self._proxies) > 1:
            self._index = (self._index + 1) % len(self._proxies)
            self.rotations += 1
        return self.current
