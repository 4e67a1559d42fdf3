"""The connector's Redis client: one connection, the handful of commands it sends, on hiredis.

Why not redis-py here: importing it costs a connector pod about 6 MB of RSS (redis 8.1 loads
77 modules on `import redis`: sync and asyncio clients, cluster, sentinel, caching, command
mixins for modules we never call), which is more than half of all a connector may use above
the bare TikTokLive client (`make bench`: RSS within 1.10x of it). A connector sends a
handful of commands (EVALSHA, SCRIPT LOAD, WAIT, GET, XREVRANGE, MULTI/HSET/EXPIRE/EXEC) over
one connection; `hiredis`, redis-py's own C protocol library, packs them and parses the replies.

It sends nothing else: no HELLO, CLIENT SETNAME/SETINFO or health-check PING on connect (the
connector's ACL user, `domain.access`, may run only its own commands), only AUTH with the URL's
user and password and SELECT of a database other than 0.

What it keeps from redis-py: `redis://`, `rediss://` (TLS: the system's CAs, `ssl_ca_certs`
or the operator's mounted bundle (`redis_options`), a client certificate, `ssl_cert_reqs`,
`ssl_check_hostname`) and `unix://` URLs with an ACL user and password (or a password only)
and a database number; connect and command timeouts; a broken connection is dropped and the
next command opens a new one. Errors
are `RedisError`s; a lost or refused connection is also a builtin `ConnectionError`, a timeout
a builtin `TimeoutError`, so callers that retry on network failures catch them as such. A full
Redis (`-OOM`) is `RedisOutOfMemoryError`, retried by the publisher like an outage.

Commands run one at a time (a lock): the publisher and the heartbeat share the connection, and
a reply is always read right after its command, so a cancelled or timed-out command closes the
connection rather than leaving a reply behind for the next caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from tiktok_service.settings import ConnectorSettings

Arg = str | bytes | int | float

#: URL query parameters of redis-py's `from_url` that tune its connection pool: accepted (the
#: same Secret serves every process) and ignored, since this client keeps one connection.
_POOL_PARAMETERS = frozenset(
    {"health_check_interval", "max_connections", "retry_on_timeout", "socket_keepalive", "protocol", "timeout"}
)
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_READ_SIZE = 65536

#: Command and connect timeout of the connector's client: a dead Redis becomes an error the
#: publisher buffers through.
TIMEOUT_S: Final = 5


class RedisError(Exception):
    """Anything that went wrong talking to Redis."""


class ReplyError(RedisError):
    """An error reply from the server (WRONGTYPE, NOSCRIPT, a Lua error...)."""


class RedisConnectionError(RedisError, ConnectionError):
    """The connection could not be opened, or broke while a command was under way."""


class AuthenticationError(RedisConnectionError):
    """The server refused the URL's user or password (retried like an outage: a Secret may be rotated)."""


class BusyLoadingError(RedisConnectionError):
    """A Redis just restarted and still loading its data (`-LOADING`): retry, as after an outage."""


class RedisTimeoutError(RedisError, TimeoutError):
    """No reply within the command timeout (the connection is dropped)."""


class RedisOutOfMemoryError(ReplyError):
    """A full Redis (maxmemory, noeviction) refused a write (`-OOM`): nothing was written, retry later."""


class NoScriptError(ReplyError):
    """EVALSHA of a script the server does not hold (`-NOSCRIPT`: a restart, a failover's new primary)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, as read from a Redis URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0
    socket_timeout: float | None = None
    connect_timeout: float | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_certs)
        context.check_hostname = self.ssl_check_hostname and self.ssl_cert_reqs != "none"
        context.verify_mode = _CERT_REQS[self.ssl_cert_reqs]
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"Redis URL parameter {name} must be true or false, not {value!r}")


def parse_url(url: str) -> Endpoint:
    """Read a redis-py style URL (`redis://[user[:password]@]host[:port][/db][?param=value...]`).

    ValueError, naming the problem (never the password), for anything this client cannot honour.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"Redis URL scheme must be redis://, rediss:// or unix://, not {parts.scheme!r}://")
    fields: dict[str, Any] = {"tls": parts.scheme == "rediss"}
    if parts.username:
        fields["username"] = unquote(parts.username)
    if parts.password:
        fields["password"] = unquote(parts.password)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL needs the socket's path")
        fields["path"] = unquote(parts.path)
    else:
        fields["host"] = unquote(parts.hostname or "127.0.0.1")
        try:
            fields["port"] = parts.port or 6379
        except ValueError as exc:
            raise ValueError("Redis URL port must be a number from 0 to 65535") from exc
        db_path = parts.path.strip("/")
        if db_path:
            if not db_path.isdigit():
                raise ValueError(f"Redis URL path must be a database number, not {db_path!r}")
            fields["db"] = int(db_path)
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        value = values[-1]
        if name == "db":
            if not value.isdigit():
                raise ValueError(f"Redis URL parameter db must be a number, not {value!r}")
            fields["db"] = int(value)
        elif name in ("password", "username"):
            fields[name] = value
        elif name in ("socket_timeout", "socket_connect_timeout"):
            key = "socket_timeout" if name == "socket_timeout" else "connect_timeout"
            try:
                fields[key] = float(value)
            except ValueError as exc:
                raise ValueError(f"Redis URL parameter {name} must be a number of seconds") from exc
        elif name == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS:
                raise ValueError(f"Redis URL parameter ssl_cert_reqs must be none, optional or required, not {value!r}")
            fields[name] = value.lower()
        elif name == "ssl_check_hostname":
            fields[name] = _flag(name, value)
        elif name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            fields[name] = value
        elif name not in _POOL_PARAMETERS:
            raise ValueError(f"unsupported Redis URL parameter {name!r}")
    return Endpoint(**fields)


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded (SCRIPT LOAD) when the server does not hold it.

    Never EVAL: the connector's ACL user may run EVALSHA and SCRIPT LOAD only (`domain.access`).
    A restart or a failover to a new primary empties the server's script cache; the next call
    meets NOSCRIPT, loads the script and runs it again. Running it again is safe: a script that
    got NOSCRIPT did not run.
    """

    def __init__(self, client: RedisClient, source: str) -> None:
        self._client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> tuple[Arg, ...]:
        """The EVALSHA command, to send in a pipeline (`RedisClient.pipeline`)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    async def load(self) -> None:
        await self._client.execute("SCRIPT", "LOAD", self.source)

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self._client.execute(*self.command(keys, args))
        except NoScriptError:
            await self.load()
        return await self._client.execute(*self.command(keys, args))


class RedisClient:
    """One lazily opened connection to Redis, commands run one at a time."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser: hiredis.Reader | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
        ssl_ca_certs: str | None = None,
        ssl_cert_reqs: str | None = None,
        ssl_check_hostname: bool | None = None,
    ) -> RedisClient:
        """Timeouts in the URL win over the arguments, as in redis-py; TLS arguments win over the URL.

        The TLS arguments are the operator's (`redis_options`: the mounted CA bundle): a URL
        in a Secret must not be able to turn off the verification the operator asked for.
        """
        endpoint = parse_url(url)
        overrides: dict[str, Any] = {}
        if endpoint.socket_timeout is None and socket_timeout is not None:
            overrides["socket_timeout"] = socket_timeout
        if endpoint.connect_timeout is None and socket_connect_timeout is not None:
            overrides["connect_timeout"] = socket_connect_timeout
        if ssl_ca_certs is not None:
            overrides["ssl_ca_certs"] = ssl_ca_certs
        if ssl_cert_reqs is not None:
            if ssl_cert_reqs not in _CERT_REQS:
                raise ValueError(f"ssl_cert_reqs must be none, optional or required, not {ssl_cert_reqs!r}")
            overrides["ssl_cert_reqs"] = ssl_cert_reqs
        if ssl_check_hostname is not None:
            overrides["ssl_check_hostname"] = ssl_check_hostname
        if overrides:
            endpoint = Endpoint(**{**endpoint.__dict__, **overrides})
        return cls(endpoint)

    # -- commands -------------------------------------------------------------------------
    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (bytes, int, list or None)."""
        replies = await self._round_trip(_pack(args), 1)
        return _checked(replies[0])

    async def pipeline(self, *commands: Sequence[Arg]) -> list[Any]:
        """Several commands in one round trip, each run on its own (not atomic); their replies.

        Every reply is read before an error reply is raised (the first one), so the connection
        stays in step.
        """
        packed = b"".join(_pack(tuple(c)) for c in commands)
        replies = await self._round_trip(packed, len(commands))
        return [_checked(r) for r in replies]

    async def transaction(self, *commands: Sequence[Arg]) -> list[Any]:
        """MULTI, the commands, EXEC in one round trip: all applied or none; their replies."""
        packed = b"".join(_pack(tuple(c)) for c in (("MULTI",), *commands, ("EXEC",)))
        replies = await self._round_trip(packed, len(commands) + 2)
        for reply in replies:
            _checked(reply)  # a command refused while queueing, or EXECABORT
        result = replies[-1]
        if result is None:
            raise RedisError("transaction aborted")
        return [_checked(r) for r in result]

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    async def get(self, key: str) -> bytes | None:
        reply: bytes | None = await self.execute("GET", key)
        return reply

    async def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Entries newest first, each (id, {field: value}) as redis-py returns them."""
        args: list[Arg] = ["XREVRANGE", name, max, min]
        if count is not None:
            args += ["COUNT", count]
        rows = await self.execute(*args)
        return [(entry_id, _pairs(values)) for entry_id, values in rows or ()]

    async def hset(self, key: str, mapping: Mapping[str, Arg]) -> int:
        reply: int = await self.execute("HSET", key, *_flatten(mapping))
        return reply

    async def expire(self, key: str, seconds: int) -> bool:
        return bool(await self.execute("EXPIRE", key, seconds))

    async def ping(self) -> bool:
        return bool(await self.execute("PING"))

    async def aclose(self) -> None:
        async with self._lock:
            writer = self._writer
            self._drop()
            if writer is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    await writer.wait_closed()

    # -- the connection ---------------------------------------------------------------------
    async def _round_trip(self, packed: bytes, replies: int) -> list[Any]:
        async with self._lock:
            try:
                return await self._exchange(packed, replies)
            except BaseException:
                # A half-read reply would be the next command's: never reuse this connection.
                self._drop()
                raise

    async def _exchange(self, packed: bytes, count: int) -> list[Any]:
        if self._writer is None:
            await self._connect()
        assert self._writer is not None and self._reader is not None and self._parser is not None
        try:
            async with asyncio.timeout(self.endpoint.socket_timeout):
                self._writer.write(packed)
                del packed
                await self._writer.drain()
                return [await self._read_reply(self._reader, self._parser) for _ in range(count)]
        except TimeoutError as exc:
            raise RedisTimeoutError(f"no reply from Redis within {self.endpoint.socket_timeout}s") from exc
        except OSError as exc:
            raise RedisConnectionError(f"connection to Redis lost: {exc}") from exc

    @staticmethod
    async def _read_reply(reader: asyncio.StreamReader, parser: hiredis.Reader) -> Any:
        while True:
            reply = parser.gets()
            if reply is not False:
                return reply
            data = await reader.read(_READ_SIZE)
            if not data:
                raise RedisConnectionError("connection closed by Redis")
            parser.feed(data)

    async def _connect(self) -> None:
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(endpoint.connect_timeout):
                if endpoint.path is not None:
                    reader, writer = await asyncio.open_unix_connection(endpoint.path)
                else:
                    context = endpoint.ssl_context()
                    reader, writer = await asyncio.open_connection(
                        endpoint.host,
                        endpoint.port,
                        ssl=context,
                        server_hostname=endpoint.host if context is not None else None,
                    )
        except TimeoutError as exc:
            raise RedisTimeoutError(f"could not connect to Redis within {endpoint.connect_timeout}s") from exc
        except OSError as exc:  # refused, unreachable, TLS handshake or certificate
            raise RedisConnectionError(f"could not connect to Redis: {exc}") from exc
        self._reader, self._writer = reader, writer
        self._parser = hiredis.Reader(replyError=ReplyError)
        handshake: list[tuple[Arg, ...]] = []
        if endpoint.password is not None:
            auth: tuple[Arg, ...] = ("AUTH", endpoint.password)
            handshake.append(auth if endpoint.username is None else ("AUTH", endpoint.username, endpoint.password))
        if endpoint.db:
            handshake.append(("SELECT", endpoint.db))
        if handshake:
            replies = await self._exchange(b"".join(_pack(c) for c in handshake), len(handshake))
            for command, reply in zip(handshake, replies, strict=True):
                if isinstance(reply, ReplyError):
                    if command[0] == "AUTH":
                        raise AuthenticationError(f"Redis refused the URL's credentials: {reply}")
                    raise reply

    def _drop(self) -> None:
        """Close the connection without waiting (safe while a cancel is being handled)."""
        writer, self._writer, self._reader, self._parser = self._writer, None, None, None
        if writer is not None:
            writer.close()


def _pack(args: tuple[Arg, ...]) -> bytes:
    # hiredis's stub types the argument as a 1-tuple; it takes a command of any length.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


#: Error replies by their first word, each its own error (the rest stay `ReplyError`).
_REPLY_ERRORS: Final[Mapping[str, type[RedisError]]] = {
    "LOADING": BusyLoadingError,
    "OOM": RedisOutOfMemoryError,
    "NOSCRIPT": NoScriptError,
}


def _checked(reply: Any) -> Any:
    if isinstance(reply, ReplyError):
        message = str(reply)
        error = _REPLY_ERRORS.get(message.split(" ", 1)[0])
        if error is not None:
            raise error(message)
        raise reply
    return reply


def redis_options(settings: ConnectorSettings) -> dict[str, Any]:
    """Keyword arguments of `RedisClient.from_url(settings.redis_url, **...)` (pure).

    Short timeouts turn a dead Redis into an error the publisher buffers through. With
    `redis_ca_file` (a `rediss://` URL, the CA bundle the operator mounts) the client verifies
    Redis' certificate and host name against that bundle instead of the system's CAs: without
    it a private CA could not be verified at all, and a connector would have to choose between
    no TLS and TLS that trusts anyone.
    """
    options: dict[str, Any] = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    if settings.redis_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
    return options


def _pairs(values: Sequence[bytes] | None) -> dict[bytes, bytes]:
    if not values:
        return {}
    return dict(zip(values[::2], values[1::2], strict=True))


def _flatten(mapping: Mapping[str, Arg]) -> Iterable[Arg]:
    for key, value in mapping.items():
        yield key
        yield value
