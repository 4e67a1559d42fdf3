"""Who may touch what in Redis and PostgreSQL: one credential per component (pure).

Every component used to share one Redis user and one database role, so a connector (which
parses data from the internet) could write any key and the API could run DDL. Here each
component gets a Redis ACL user and a PostgreSQL login of its own, allowed exactly the
commands and keys its code uses. The rules are rendered here, from the key names in
`naming`, so a key added there and used by a component shows up in its rules or fails the
unit tests; `tiktok_service.access` applies them (idempotent `ACL SETUSER`, `CREATE ROLE`).

Why one shared connector user and not one per Livestream: a per-Livestream user would have
to be created by the operator, and `ACL SETUSER` is an administrator's command (whoever may
run it may grant themselves everything), so the operator would become a Redis
administrator, and a user would pile up per room. The shared connector user is instead
limited to the connector's key families and to the commands it runs: it may append to the
per-type streams but never read them, may read per-livestream streams only with XREVRANGE
(its duplicate filter), reads its hashes only inside its scripts (fence, sequence), and can
reach no other key (dead letters, the API's `tiktok.api.*`, anything outside `tiktok.*`), no
admin command (FLUSHALL, CONFIG, KEYS, SCAN, ACL) and no Pub/Sub channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from tiktok_service.domain import naming


class Role(StrEnum):
    CONNECTOR = "connector"
    PERSISTER = "persister"
    API = "api"
    OPERATOR = "operator"


#: Components that talk to PostgreSQL (connectors never do).
DATABASE_ROLES: Final = (Role.PERSISTER, Role.OPERATOR, Role.API)

#: What every client does on connect or while idle: redis-py's AUTH (always allowed),
#: `HELLO` (RESP3) and the health-check `PING`; from Redis 7.2 also `CLIENT SETINFO`
#: (the library's name; redis-py ignores a refusal, but each one lands in `ACL LOG`).
_CONNECTION: Final = ("ping", "hello")
_SETINFO_SINCE: Final = (7, 2)

#: Commands per role, from the code that runs them (see each module named). Commands a Lua
#: script calls are checked against the caller's rights too, so they are listed here.
_COMMANDS: Final[Mapping[Role, tuple[str, ...]]] = {
    # connector/publisher.py: the publish script (fence check: HMGET, HSET, EXPIRE; then GET,
    # XADD, HINCRBY, SET, EXPIRE), run with EVALSHA (SCRIPT LOAD when the server answers
    # NOSCRIPT, connector/redis_client.py); with REPLICAS_TO_WAIT in a pipeline with WAIT; the
    # connector's client sends no HELLO, CLIENT or PING of its own; the take-over reads GET and
    # XREVRANGE. connector/fencing.py: the claim script (HINCRBY, HGET, HSET, EXPIRE) and the
    # heartbeat script (fence check, EXPIRE of the sequence, HSET + EXPIRE of the status).
    # status_reporter.py without a fence: HSET + EXPIRE in MULTI/EXEC.
    Role.CONNECTOR: (
        "evalsha",
        "script|load",
        "wait",
        "get",
        "set",
        "expire",
        "xadd",
        "hincrby",
        "hset",
        "hget",
        "hmget",
        "xrevrange",
        "multi",
        "exec",
        "discard",
    ),
    # persister/streams.py: the consumer group (create, read, claim, ack, pending), dead letters
    # in MULTI/EXEC; persister/trimming.py: lag and trimming (XLEN, XINFO GROUPS, XPENDING,
    # XRANGE, XTRIM MINID) of the same streams.
    Role.PERSISTER: (
        "xgroup|create",
        "xreadgroup",
        "xack",
        "xautoclaim",
        "xclaim",
        "xpending",
        "xadd",
        "xtrim",
        "xlen",
        "xrange",
        "xinfo|groups",
        "multi",
        "exec",
        "discard",
    ),
    # api/feeds.py: SSE catch-up and live tail of one livestream's stream, XINFO STREAM for the
    # gap check. Under `tiktok.api.`: api/stream_guard.py (the lease script: ZREMRANGEBYSCORE,
    # ZCARD, ZADD, PEXPIRE; ZADD, PEXPIRE, ZREM), api/ratelimit.py (the `limits` library's
    # sliding-window scripts: GET, PTTL, RENAME, SET, EXISTS, INCRBY), api/livestreams.py (the
    # connect lock: SET NX PX, released by redis-py's script: GET, DEL; the id -> name index:
    # GET, SET EX). Scripts run with EVALSHA after SCRIPT LOAD. routes/health.py: PING.
    Role.API: (
        "xread",
        "xrange",
        "xrevrange",
        "xinfo|stream",
        "evalsha",
        "script|load",
        "get",
        "set",
        "del",
        "exists",
        "incrby",
        "rename",
        "pttl",
        "pexpire",
        "zadd",
        "zrem",
        "zcard",
        "zremrangebyscore",
    ),
    # operator/store.py: the connector's heartbeat and per-type counts.
    Role.OPERATOR: ("hgetall",),
}


def _type_streams(access: str) -> list[str]:
    return [f"{access}~{stream}" for stream in naming.all_type_streams()]


def redis_key_patterns(role: Role) -> list[str]:
    """ACL key patterns: `~p` read and write, `%R~p` read only, `%W~p` write only (Redis 7).

    A command is checked against each key it names (also inside a script): XADD needs only
    write access, so a writer holding `%W~` can append to a stream it can never read. A key
    handed to EVALSHA as one of its KEYS needs both, whatever the script does with it: so the
    connector's status hash, which its fenced heartbeat script names, is read-write too.
    """
    livestream = naming.livestream_stream("*")
    status = naming.connector_status_key("*")
    counts = naming.event_counts_key("*")
    seq = naming.publish_seq_key("*")
    fence = naming.connector_fence_key("*")
    if role is Role.CONNECTOR:
        return [*_type_streams("%W"), f"~{livestream}", f"~{counts}", f"~{seq}", f"~{fence}", f"~{status}"]
    if role is Role.PERSISTER:
        return [*_type_streams(""), f"%W~{naming.DEAD_LETTER_STREAM}"]
    if role is Role.API:
        return [f"%R~{livestream}", f"~{naming.API_KEY_PREFIX}*"]
    return [f"%R~{status}", f"%R~{counts}"]


def redis_commands(role: Role, server_version: tuple[int, int] = (7, 0)) -> list[str]:
    setinfo = ["client|setinfo"] if server_version >= _SETINFO_SINCE else []
    return [*_CONNECTION, *setinfo, *_COMMANDS[role]]


def password_sha256(password: str) -> str:
    """What Redis stores for a password (`#<hex>` in ACL rules): the plain text never travels."""
    return hashlib.sha256(password.encode()).hexdigest()


def redis_acl_rules(role: Role, password: str, server_version: tuple[int, int] = (7, 0)) -> list[str]:
    """The arguments after `ACL SETUSER <user>`: the whole user, replacing whatever was there.

    `reset` first makes the command idempotent and exact (rights removed from the code
    disappear from the server on the next setup); `resetchannels` denies Pub/Sub.
    """
    if not password:
        raise ValueError(f"the {role} Redis user needs a password")
    rules = ["reset", "on", f"#{password_sha256(password)}", "resetchannels", "-@all"]
    rules += [f"+{command}" for command in redis_commands(role, server_version)]
    rules += redis_key_patterns(role)
    return rules


def redis_user(role: Role) -> str:
    return f"tiktok-{role}"


def database_group(role: Role) -> str:
    """The NOLOGIN role holding a component's grants (created by the migrations)."""
    return f"tiktok_{role}"


def database_login(role: Role) -> str:
    """The login role a component connects as: a member of its group, with a password."""
    return f"tiktok_{role}_login"


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` with its user and password replaced (percent-encoded), everything else kept."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def password_in(url: str, expected_user: str) -> str:
    """The password of `url`, which must name `expected_user` (a URL copied into the wrong
    Secret key would otherwise give one component another's password)."""
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    if user != expected_user:
        raise ValueError(f"the URL names the user {user or '(none)'!r}, expected {expected_user!r}")
    if not parts.password:
        raise ValueError(f"the URL for {expected_user!r} has no password")
    return unquote(parts.password)


def redis_role_url(admin_url: str, role: Role, password: str) -> str:
    """The URL `role` connects to Redis with: the administrator's URL, the role's user."""
    return with_credentials(admin_url, redis_user(role), password)


def database_role_url(owner_url: str, role: Role, password: str) -> str:
    """The DSN `role` connects to PostgreSQL with: the owner's DSN, the role's login."""
    return with_credentials(owner_url, database_login(role), password)


#: PostgreSQL's own default (`scram_iterations`, 4096).
SCRAM_ITERATIONS: Final = 4096
_VERIFIER: Final = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


def scram_sha256_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677, as `pg_authid` has it).

    Sent as the `PASSWORD` of `CREATE/ALTER ROLE`, the server stores it as is: the plain
    password never reaches the server, its statement log or `pg_stat_activity`. (PostgreSQL
    also applies SASLprep to non-ASCII passwords; generated passwords are ASCII.)
    """
    if not password.isascii():
        raise ValueError("database passwords must be ASCII")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    verifier = f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"
    assert _VERIFIER.match(verifier)  # only base64, digits and separators: safe inside a SQL literal
    return verifier


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def login_statements(role: Role, verifier: str, *, exists: bool) -> list[str]:
    """SQL making `role`'s login (a member of its group) with the password `verifier`.

    Idempotent: an existing login gets the new password (rotation) and the same rights.
    The login holds no rights of its own, only its group's, and none of the attributes
    that would let it step outside them.
    """
    if not _VERIFIER.match(verifier):
        raise ValueError("not a SCRAM-SHA-256 verifier")
    login, group = quote_identifier(database_login(role)), quote_identifier(database_group(role))
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
    verb = "ALTER" if exists else "CREATE"
    return [f"{verb} ROLE {login} WITH {attributes} PASSWORD '{verifier}'", f"GRANT {group} TO {login}"]
