"""Redis URLs as the connector's client reads them: the redis-py forms the Secret may hold."""

from __future__ import annotations

import ssl

import pytest

from tiktok_service.connector.redis_client import Endpoint, RedisClient, parse_url


def test_a_plain_url_names_host_port_and_database() -> None:
    assert parse_url("redis://redis.tiktok.svc:6380/2") == Endpoint(host="redis.tiktok.svc", port=6380, db=2)


def test_defaults_are_redis_own() -> None:
    assert parse_url("redis://") == Endpoint(host="127.0.0.1", port=6379, db=0)


def test_an_acl_user_and_password_are_percent_decoded() -> None:
    endpoint = parse_url("rediss://connector:p%40ss%2Fword@redis:6379/0")
    assert (endpoint.username, endpoint.password, endpoint.tls) == ("connector", "p@ss/word", True)


def test_a_password_alone_authenticates_the_default_user() -> None:
    endpoint = parse_url("redis://:secret@redis:6379")
    assert (endpoint.username, endpoint.password) == (None, "secret")


def test_a_unix_socket_takes_its_database_from_the_query() -> None:
    endpoint = parse_url("unix:///run/redis/redis.sock?db=3&password=pw")
    assert (endpoint.path, endpoint.db, endpoint.password) == ("/run/redis/redis.sock", 3, "pw")


def test_tls_options_of_the_query_are_honoured() -> None:
    endpoint = parse_url(
        "rediss://redis:6379/0?ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=/etc/ca.pem"
        "&ssl_certfile=/etc/c.pem&ssl_keyfile=/etc/k.pem"
    )
    assert endpoint.ssl_cert_reqs == "none" and endpoint.ssl_check_hostname is False
    assert (endpoint.ssl_ca_certs, endpoint.ssl_certfile, endpoint.ssl_keyfile) == (
        "/etc/ca.pem",
        "/etc/c.pem",
        "/etc/k.pem",
    )


def test_tls_verifies_the_server_and_its_name_unless_told_otherwise() -> None:
    context = parse_url("rediss://redis:6379/0").ssl_context()
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    relaxed = parse_url("rediss://redis:6379/0?ssl_cert_reqs=none").ssl_context()
    assert relaxed is not None and relaxed.verify_mode is ssl.CERT_NONE and not relaxed.check_hostname
    assert parse_url("redis://redis:6379/0").ssl_context() is None


def test_pool_tuning_parameters_of_redis_py_are_accepted() -> None:
    # The same Secret serves the persister and the API, which use redis-py's pool.
    assert parse_url("redis://redis/0?health_check_interval=10&max_connections=20").db == 0


def test_timeouts_in_the_url_win_over_the_defaults() -> None:
    client = RedisClient.from_url("redis://redis/0?socket_timeout=2", socket_timeout=5, socket_connect_timeout=5)
    assert (client.endpoint.socket_timeout, client.endpoint.connect_timeout) == (2.0, 5)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://redis:6379", "scheme"),
        ("redis://redis:99999/0", "port"),
        ("redis://redis:6379/zero", "database number"),
        ("redis://redis/0?db=x", "db must be a number"),
        ("redis://redis/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://redis/0?ssl_check_hostname=perhaps", "true or false"),
        ("redis://redis/0?socket_timeout=soon", "seconds"),
        ("redis://redis/0?cluster=1", "unsupported Redis URL parameter 'cluster'"),
        ("unix://", "socket's path"),
    ],
)
def test_a_url_the_client_cannot_honour_is_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_url(url)


def test_the_password_never_appears_in_an_error() -> None:
    with pytest.raises(ValueError) as info:
        parse_url("redis://user:hunter2@redis/0?cluster=1")
    assert "hunter2" not in str(info.value)
