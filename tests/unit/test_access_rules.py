"""The rules each component's credential is given (pure: rendering only)."""

from __future__ import annotations

import base64
import fnmatch

import pytest

from tiktok_service.access import redis_users
from tiktok_service.api import quotas
from tiktok_service.domain import access, naming
from tiktok_service.domain.access import Role

OWN = "3f2b6c1e-8a4d-4b7e-9c15-2d6f0e9a1b23"


def patterns(role: Role, mode: str) -> list[str]:
    """Key globs of `role` that grant `mode` ("R" or "W")."""
    found = []
    for rule in access.redis_key_patterns(role):
        flags, _, glob = rule.partition("~")
        if flags in ("", f"%{mode}", "%RW"):
            found.append(glob)
    return found


def allowed(role: Role, mode: str, key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, glob) for glob in patterns(role, mode))


def test_every_user_is_reset_first_denied_everything_and_given_named_commands_only() -> None:
    for role in Role:
        rules = access.redis_acl_rules(role, "pw")
        assert rules[:2] == ["reset", "on"] and "resetchannels" in rules and "-@all" in rules
        granted = [rule for rule in rules if rule.startswith("+")]
        assert granted and not any(rule.startswith("+@") for rule in granted), "no whole categories"
        assert not {"allkeys", "allcommands", "nopass", "~*", "allchannels"} & set(rules)
        for forbidden in ("flushall", "flushdb", "config", "keys", "scan", "acl", "eval", "debug", "unlink"):
            assert f"+{forbidden}" not in granted and not any(r.startswith(f"+{forbidden}|") for r in granted)
        # Only the API deletes (its connect lock, released by redis-py's script), in its own keys only.
        assert ("+del" in granted) == (role is Role.API), role


def test_the_password_travels_as_its_sha256_only() -> None:
    rules = access.redis_acl_rules(Role.API, "s3cret")
    assert "#" + access.password_sha256("s3cret") in rules
    assert not any("s3cret" in rule for rule in rules)
    with pytest.raises(ValueError):
        access.redis_acl_rules(Role.API, "")


def test_client_setinfo_is_granted_only_by_servers_that_know_it() -> None:
    assert "+client|setinfo" not in access.redis_acl_rules(Role.API, "pw", (7, 0))
    assert "+client|setinfo" in access.redis_acl_rules(Role.API, "pw", (7, 2))


def test_the_connector_writes_its_key_families_and_appends_to_type_streams_without_reading_them() -> None:
    for key in (
        naming.livestream_stream(OWN),
        naming.event_counts_key(OWN),
        naming.publish_seq_key(OWN),
        naming.connector_status_key(OWN),
        naming.connector_fence_key(OWN),
        *naming.all_type_streams(),
    ):
        assert allowed(Role.CONNECTOR, "W", key), key
    for stream in naming.all_type_streams():
        assert not allowed(Role.CONNECTOR, "R", stream)
    assert allowed(Role.CONNECTOR, "R", naming.livestream_stream(OWN))  # the duplicate filter's seed
    assert allowed(Role.CONNECTOR, "R", naming.publish_seq_key(OWN))  # the publish script's sequence
    assert allowed(Role.CONNECTOR, "R", naming.connector_fence_key(OWN))  # every write checks the fence
    assert {"evalsha", "script|load", "wait", "hmget"} <= set(access.redis_commands(Role.CONNECTOR))
    # The heartbeat script is given the status hash as a key: EVALSHA needs read and write there.
    assert allowed(Role.CONNECTOR, "R", naming.connector_status_key(OWN))
    for key in (naming.DEAD_LETTER_STREAM, "tiktok", "other", "tiktok.anything", quotas.connect_lock_key("w")):
        assert not allowed(Role.CONNECTOR, "W", key) and not allowed(Role.CONNECTOR, "R", key), key


def test_the_persister_owns_the_type_streams_and_only_appends_dead_letters() -> None:
    for stream in naming.all_type_streams():
        assert allowed(Role.PERSISTER, "R", stream) and allowed(Role.PERSISTER, "W", stream)
    assert allowed(Role.PERSISTER, "W", naming.DEAD_LETTER_STREAM)
    assert not allowed(Role.PERSISTER, "R", naming.DEAD_LETTER_STREAM)
    for key in (naming.livestream_stream(OWN), naming.event_counts_key(OWN), naming.publish_seq_key(OWN)):
        assert not allowed(Role.PERSISTER, "R", key) and not allowed(Role.PERSISTER, "W", key)


def test_the_persister_may_trim_and_measure_lag_but_not_delete() -> None:
    commands = set(access.redis_commands(Role.PERSISTER))
    assert {"xtrim", "xinfo|groups", "xpending", "xautoclaim", "xclaim", "xlen", "xrange"} <= commands
    assert not {"del", "xgroup|destroy", "xgroup|setid", "xdel"} & commands


def test_the_api_writes_only_its_own_keys_and_reads_livestream_streams() -> None:
    for key in (
        quotas.workspace_streams_key("w"),
        quotas.key_streams_key("k"),
        quotas.connect_lock_key("w"),
        quotas.livestream_name_key(OWN),
        f"{quotas.RATE_LIMIT_PREFIX}:LIMITER/key/abc/10/1/second",  # how `limits` names its counters
    ):
        assert allowed(Role.API, "R", key) and allowed(Role.API, "W", key), key
    assert allowed(Role.API, "R", naming.livestream_stream(OWN))
    assert not allowed(Role.API, "W", naming.livestream_stream(OWN))
    for key in ("tiktok.comment", naming.connector_fence_key(OWN), naming.DEAD_LETTER_STREAM):
        assert not allowed(Role.API, "R", key) and not allowed(Role.API, "W", key), key


def test_the_api_and_the_operator_only_read_what_others_write() -> None:
    assert allowed(Role.API, "R", naming.livestream_stream(OWN))
    assert not allowed(Role.API, "R", "tiktok.comment")
    assert allowed(Role.OPERATOR, "R", naming.connector_status_key(OWN))
    assert allowed(Role.OPERATOR, "R", naming.event_counts_key(OWN))
    assert not allowed(Role.OPERATOR, "R", naming.livestream_stream(OWN))
    for role in (Role.API, Role.OPERATOR):
        for key in (naming.livestream_stream(OWN), naming.connector_status_key(OWN), "tiktok.comment"):
            assert not allowed(role, "W", key)
    assert {"xread", "xrange", "xrevrange", "xinfo|stream"} <= set(access.redis_commands(Role.API))
    assert set(access.redis_commands(Role.OPERATOR)) - {"ping", "hello"} == {"hgetall"}


def test_role_urls_replace_the_credentials_and_keep_the_rest() -> None:
    url = access.redis_role_url("rediss://admin:x@redis.svc:6380/0?ssl_cert_reqs=required", Role.API, "p@ss:/w")
    assert url == "rediss://tiktok-api:p%40ss%3A%2Fw@redis.svc:6380/0?ssl_cert_reqs=required"
    assert access.database_role_url("postgresql://tiktok@[::1]:5432/tiktok", Role.PERSISTER, "pw") == (
        "postgresql://tiktok_persister_login:pw@[::1]:5432/tiktok"
    )


def test_the_scram_verifier_has_postgresqls_shape_and_depends_on_the_salt() -> None:
    salt = bytes(range(16))
    verifier = access.scram_sha256_verifier("pw", salt)
    head, keys = verifier.split("$", 1)[1].split("$")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert base64.b64decode(head.split(":")[1]) == salt
    assert all(len(base64.b64decode(part)) == 32 for part in keys.split(":"))
    assert access.scram_sha256_verifier("pw", salt) == verifier
    assert access.scram_sha256_verifier("pw", bytes(16)) != verifier
    with pytest.raises(ValueError):
        access.scram_sha256_verifier("pässword", salt)


def test_login_statements_create_or_rotate_a_member_of_the_group_that_can_do_nothing_else() -> None:
    verifier = access.scram_sha256_verifier("pw", bytes(16))
    create, grant = access.login_statements(Role.API, verifier, exists=False)
    assert create.startswith('CREATE ROLE "tiktok_api_login" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    assert f"PASSWORD '{verifier}'" in create and "pw'" not in create
    assert grant == 'GRANT "tiktok_api" TO "tiktok_api_login"'
    assert access.login_statements(Role.API, verifier, exists=True)[0].startswith('ALTER ROLE "tiktok_api_login"')
    with pytest.raises(ValueError):
        access.login_statements(Role.API, "x'; DROP TABLE events; --", exists=False)


def test_a_password_is_taken_only_from_a_url_naming_the_expected_user() -> None:
    url = access.redis_role_url("redis://r:6379/0", Role.PERSISTER, "p@ss:/w")
    assert access.password_in(url, "tiktok-persister") == "p@ss:/w"
    with pytest.raises(ValueError, match="expected 'tiktok-api'"):
        access.password_in(url, "tiktok-api")
    with pytest.raises(ValueError, match="no password"):
        access.password_in("redis://tiktok-api@r:6379/0", "tiktok-api")


@pytest.mark.parametrize(("version", "expected"), [("7.0.15", (7, 0)), ("7.2.4", (7, 2)), ("8", (8, 0))])
def test_the_server_version_decides_on_client_setinfo(version: str, expected: tuple[int, int]) -> None:
    assert redis_users.server_version({"redis_version": version}) == expected
