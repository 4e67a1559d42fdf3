"""Connection options, pure parts: proxy lists, redaction, rotation, the rotation predicate, locale, settings."""

from __future__ import annotations

import json
import logging
import random
import uuid
from typing import Any

import httpx
import pytest
import python_socks
from httpx_socks import AsyncProxyTransport
from pydantic import ValidationError
from TikTokLive.client.errors import (
    AgeRestrictedError,
    SignatureRateLimitError,
    UserNotFoundError,
    UserOfflineError,
    WebcastBlockedError,
)
from TikTokLive.client.web.routes.fetch_room_id_live_html import FailedParseRoomIdError
from websockets.datastructures import Headers
from websockets.legacy.exceptions import InvalidStatusCode

from tiktok_service.connector import client_options, outcomes, proxy_failover, transport
from tiktok_service.connector.redaction import Redactor
from tiktok_service.domain import proxies
from tiktok_service.settings import ConnectorSettings

SECRET = "s3cr:t/P@ss"
QUOTED = "s3cr%3At%2FP%40ss"


# -- parsing and redaction ----------------------------------------------------------------------


def test_a_proxy_list_is_one_url_per_line_with_comments_and_blank_lines_ignored() -> None:
    text = f"""
    # egress pool A
    http://alice:{QUOTED}@10.0.0.1:3128
    socks5://bob:pw@proxy.example:1080

    socks5h://10.0.0.2:1080
    """

    parsed = proxies.parse_proxies(text)

    assert [(p.scheme, p.host, p.port, p.username, p.password) for p in parsed] == [
        ("http", "10.0.0.1", 3128, "alice", SECRET),
        ("socks5", "proxy.example", 1080, "bob", "pw"),
        ("socks5", "10.0.0.2", 1080, None, None),
    ]
    assert parsed[0].url == f"http://alice:{QUOTED}@10.0.0.1:3128", "credentials are re-quoted for the clients"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"https://u:{QUOTED}@h:443", "scheme"),
        (f"ftp://u:{QUOTED}@h:21", "scheme"),
        (f"http://u:{QUOTED}@h", "port"),
        (f"http://u:{QUOTED}@h:99999", "port"),
        (f"http://u:{QUOTED}@h:3128/path", "path"),
        (f"http://u:{QUOTED}@:3128", "host"),
    ],
)
def test_a_bad_line_is_named_by_number_and_problem_never_by_its_content(line: str, problem: str) -> None:
    with pytest.raises(proxies.ProxyListError) as raised:
        proxies.parse_proxies(f"http://ok:pw@h:1\n{line}")

    message = str(raised.value)
    assert "line 2" in message
    assert problem in message
    assert SECRET not in message and QUOTED not in message and "u:" not in message


def test_a_proxy_prints_redacted_everywhere() -> None:
    (proxy,) = proxies.parse_proxies(f"http://alice:{QUOTED}@10.0.0.1:3128")

    assert proxy.redacted == "http://alice:***@10.0.0.1:3128"
    for shown in (str(proxy), repr(proxy), f"{proxy}", str([proxy])):
        assert SECRET not in shown and QUOTED not in shown
    assert proxy.secrets == {SECRET, QUOTED}
    assert proxies.parse_proxy(f"socks5://bob:{QUOTED}@h:1080").redacted == "socks5://bob:***@h:1080"
    assert proxies.parse_proxy("http://h:1").redacted == "http://h:1"


def test_the_redactor_removes_secrets_credentials_in_urls_and_session_cookies() -> None:
    redactor = Redactor({SECRET, QUOTED, "abcdef0123456789"})

    text = (
        f"ProxyError: http://alice:{QUOTED}@h:1 refused {SECRET}; "
        "Cookie: tt-target-idc=useast2a; sessionid=zzzz9999; sid_tt=zzzz9999; "
        "(Session ID: abcdef01********) url?session_id=abcdef0123456789&x=1"
    )
    scrubbed = redactor.scrub(text)

    for secret in (SECRET, QUOTED, "zzzz9999", "abcdef01", "abcdef0123456789"):
        assert secret not in scrubbed
    assert "http://alice:***@h:1" in scrubbed
    assert "tt-target-idc=useast2a" in scrubbed, "what is not a credential stays readable"


def test_the_redactor_as_a_log_filter_rewrites_the_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    redactor = Redactor({SECRET})
    logger.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction"):
            logger.info("cookie string %s and sessionid=%s", SECRET, "c0ffee00")
    finally:
        logger.removeFilter(redactor)

    assert SECRET not in caplog.text and "c0ffee00" not in caplog.text
    assert "cookie string ***" in caplog.text


# -- rotation -----------------------------------------------------------------------------------


def endpoints(count: int) -> tuple[proxies.ProxyEndpoint, ...]:
    return proxies.parse_proxies("\n".join(f"http://u:p@10.0.0.{i}:3128" for i in range(count)))


def test_rotation_starts_at_a_stable_position_per_livestream_and_wraps_around() -> None:
    pool = endpoints(3)
    key = "0b3f6a4e-8c1d-4d59-9a55-0c6b1f1f2a10"
    start = proxies.start_index(key, 3)
    assert start == proxies.start_index(key, 3)

    rotation = proxies.ProxyRotation(pool, start=start)
    seen = [rotation.current]
    seen += [rotation.rotate() for _ in range(3)]

    assert seen == [pool[start], pool[(start + 1) % 3], pool[(start + 2) % 3], pool[start]]
    assert rotation.rotations == 3


def test_many_livestreams_sharing_a_list_are_spread_over_it() -> None:
    starts = [proxies.start_index(str(uuid.UUID(int=i)), 4) for i in range(400)]

    assert {index: starts.count(index) for index in range(4)} == pytest.approx(
        {index: 100 for index in range(4)}, abs=35
    )


def test_no_proxies_and_a_single_proxy_never_move() -> None:
    assert proxies.ProxyRotation(()).current is None
    assert proxies.ProxyRotation(()).rotate() is None
    single = proxies.ProxyRotation(endpoints(1))
    assert single.rotate() == single.current
    assert single.rotations == 0


def rate_limited() -> SignatureRateLimitError:
    request = httpx.Request("GET", "http://sign/webcast/fetch")
    response = httpx.Response(429, request=request, json={}, headers={"RateLimit-Remaining": "5"})
    return SignatureRateLimitError(None, "try again in %s seconds", response=response)


def chained(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "rotates"),
    [
        (httpx.ProxyError("407 Proxy Authentication Required"), True),
        (python_socks.ProxyError("Authentication failed"), True),
        (python_socks.ProxyConnectionError("Could not connect to proxy"), True),
        (python_socks.ProxyTimeoutError("Proxy connection timed out"), True),
        (WebcastBlockedError("rejected"), True),
        (InvalidStatusCode(403, Headers()), True),
        (
            httpx.HTTPStatusError(
                "429",
                request=httpx.Request("GET", "https://www.tiktok.com"),
                response=httpx.Response(429, request=httpx.Request("GET", "https://www.tiktok.com")),
            ),
            True,
        ),
        (FailedParseRoomIdError("no SIGI_STATE"), True),
        (UserNotFoundError("captcha pages look like this"), True),
        (chained(json.JSONDecodeError("x", "", 0), FailedParseRoomIdError("captcha")), True),
        (httpx.ConnectError("refused"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (rate_limited(), False),
        (chained(rate_limited(), httpx.ConnectError("sign server down")), False),
        (UserOfflineError(), False),
        (AgeRestrictedError(), False),
        (ValueError("Target IDC must be passed"), False),
    ],
)
def test_failures_another_egress_ip_can_cure_rotate_the_proxy(exc: BaseException, rotates: bool) -> None:
    policy = outcomes.with_proxy(
        outcomes.Policy(
            wait_for_live=False, live_poll_interval_s=30, backoff_base_s=1, backoff_cap_s=60, max_reconnects=0
        ),
        3,
    )
    decision, _ = outcomes.decide(
        outcomes.classify(exc, now=0.0, proxied=False), outcomes.Streak(), policy, random.Random(0), now=0.0
    )
    assert decision.rotate_proxy is rotates


def test_a_failover_moves_to_the_next_proxy_and_counts_it() -> None:
    failover = proxy_failover.ProxyFailover(endpoints(2), key="k")
    first = failover.current

    failover.rotate("blocked")
    assert failover.current != first
    failover.rotate("blocked")
    assert failover.current == first
    single = proxy_failover.ProxyFailover(endpoints(1), key="k")
    only = single.current
    single.rotate("blocked")
    assert single.current == only


# -- the rejected handshake ---------------------------------------------------------------------


def test_a_rejected_handshake_reads_as_the_library_reads_it() -> None:
    blocked = transport.blocked_error(InvalidStatusCode(400, Headers({"Handshake-Msg": "room is not live"})))
    assert isinstance(blocked, WebcastBlockedError)
    assert "room is not live" in str(blocked)
    assert isinstance(transport.blocked_error(InvalidStatusCode(200, Headers())), WebcastBlockedError)
    assert transport.blocked_error(InvalidStatusCode(502, Headers())) is None


async def test_tiktok_answering_429_is_an_error_that_rotates_the_proxy() -> None:
    request = httpx.Request("GET", "https://www.tiktok.com/@alice/live")

    with pytest.raises(httpx.HTTPStatusError) as raised:
        await client_options.raise_on_rate_limit(httpx.Response(429, request=request))
    await client_options.raise_on_rate_limit(httpx.Response(200, request=request))
    await client_options.raise_on_rate_limit(httpx.Response(404, request=request))

    assert outcomes.classify(raised.value, now=0.0).kind is outcomes.Kind.TIKTOK_RATE_LIMITED
    hooks = client_options.client_kwargs(settings(), None)["web_kwargs"]["httpx_kwargs"]["event_hooks"]
    assert hooks == {"response": [client_options.raise_on_rate_limit]}


def test_the_tolerant_reader_is_installed_with_or_without_a_proxy() -> None:
    from TikTokLive import TikTokLiveClient

    configured = settings(proxies="socks5://bob:pw@10.0.0.9:1080")
    proxied = TikTokLiveClient(**client_options.client_kwargs(configured, configured.proxy_endpoints[0]))
    direct = TikTokLiveClient(**client_options.client_kwargs(configured, None))

    transport.install(proxied)
    transport.install(direct)

    assert proxied._ws._connect_generator_class is transport.TolerantWebcastProxyConnect
    assert direct._ws._connect_generator_class is transport.TolerantWebcastConnect
    reader = transport.TolerantReader.__aiter__
    assert transport.TolerantWebcastProxyConnect.__aiter__ is reader
    assert transport.TolerantWebcastConnect.__aiter__ is reader


# -- locale and client arguments ----------------------------------------------------------------


def test_locale_parameters_replace_the_librarys_random_location() -> None:
    locale = client_options.locale_params("de", "AT", "Europe/Vienna")

    assert locale.web == {
        "app_language": "de",
        "browser_language": "de-AT",
        "tz_name": "Europe/Vienna",
        "webcast_language": "de",
        "priority_region": "AT",
        "region": "AT",
    }
    assert locale.ws == {k: v for k, v in locale.web.items() if k not in {"priority_region", "region"}}
    assert locale.headers == {"Accept-Language": "de-AT,de;q=0.9"}


def settings(**values: Any) -> ConnectorSettings:
    return ConnectorSettings(livestream_id="ls", username="alice", **values)


def test_a_proxy_goes_to_both_transports_and_no_proxy_to_neither() -> None:
    configured = settings(proxies=f"http://bob:{QUOTED}@10.0.0.9:3128")
    (endpoint,) = configured.proxy_endpoints

    kwargs = client_options.client_kwargs(configured, endpoint)
    assert str(kwargs["web_proxy"].url) == "http://10.0.0.9:3128"
    assert kwargs["web_proxy"].auth == ("bob", SECRET)
    assert kwargs["ws_proxy"].auth == ("bob", SECRET)
    unproxied = client_options.client_kwargs(configured, None)
    assert "web_proxy" not in unproxied and "ws_proxy" not in unproxied
    assert "transport" not in unproxied["web_kwargs"]["httpx_kwargs"]


def test_a_socks5_proxy_carries_web_requests_through_python_socks() -> None:
    """httpcore's SOCKS connection leaves its socket open when the proxy refuses the login."""
    configured = settings(proxies=f"socks5://bob:{QUOTED}@10.0.0.9:1080")
    (endpoint,) = configured.proxy_endpoints

    kwargs = client_options.client_kwargs(configured, endpoint)

    assert "web_proxy" not in kwargs
    assert isinstance(kwargs["web_kwargs"]["httpx_kwargs"]["transport"], AsyncProxyTransport)
    assert kwargs["ws_proxy"].auth == ("bob", SECRET)


def test_settings_never_show_credentials() -> None:
    configured = settings(
        proxies=f"http://alice:{QUOTED}@h:1",
        session_id="c0ffee" * 6,
        tt_target_idc="useast2a",
        WHITELIST_AUTHENTICATED_SESSION_ID_HOST="api.eulerstream.com",
    )

    for shown in (repr(configured), str(configured), configured.model_dump_json()):
        assert QUOTED not in shown and SECRET not in shown and "c0ffee" not in shown
    assert client_options.secrets_of(configured) >= {SECRET, QUOTED, "c0ffee" * 6, "c0ffeec0"}


def test_a_bad_proxy_list_is_a_configuration_error_that_does_not_quote_it() -> None:
    with pytest.raises(ValidationError) as raised:
        settings(proxies=f"http://alice:{QUOTED}@h:1\nhttps://alice:{QUOTED}@h:2")

    (error,) = raised.value.errors()
    assert "line 2" in error["msg"]
    assert QUOTED not in error["msg"] and SECRET not in error["msg"]


def test_a_session_needs_its_data_centre_and_the_sign_servers_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WHITELIST_AUTHENTICATED_SESSION_ID_HOST", raising=False)
    monkeypatch.delenv("CONNECTOR_SESSION_SIGN_HOST", raising=False)
    session = "c0ffee" * 6

    with pytest.raises(ValidationError, match="tt_target_idc"):
        settings(session_id=session)
    with pytest.raises(ValidationError, match="WHITELIST_AUTHENTICATED_SESSION_ID_HOST") as raised:
        settings(session_id=session, tt_target_idc="useast2a")
    assert session not in str(raised.value)
    with pytest.raises(ValidationError, match="not the host of the sign server in use"):
        settings(
            session_id=session,
            tt_target_idc="useast2a",
            sign_api_url="https://sign.example",
            WHITELIST_AUTHENTICATED_SESSION_ID_HOST="api.eulerstream.com",
        )
    with pytest.raises(ValidationError, match="not the host of the sign server in use"):
        settings(session_id=session, tt_target_idc="useast2a", WHITELIST_AUTHENTICATED_SESSION_ID_HOST="sign.example")
    assert (
        settings(
            session_id=session, tt_target_idc="useast2a", WHITELIST_AUTHENTICATED_SESSION_ID_HOST="api.eulerstream.com"
        ).session_sign_host
        == "api.eulerstream.com"
    ), "the library's own sign server by default"

    monkeypatch.setenv("WHITELIST_AUTHENTICATED_SESSION_ID_HOST", "sign.example")
    ok = settings(session_id=session, tt_target_idc="useast2a", sign_api_url="https://sign.example/")
    assert ok.session_sign_host == "sign.example"


@pytest.mark.parametrize(
    "values",
    [{"language": "EN"}, {"language": "english"}, {"region": "us"}, {"timezone": "Europe/../etc"}, {"room_id": 0}],
)
def test_locale_and_room_id_are_validated(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(**values)


def test_the_default_sign_server_is_the_librarys() -> None:
    from TikTokLive.client.web.web_settings import _WebDefaults

    from tiktok_service.settings import DEFAULT_SIGN_URL

    assert _WebDefaults().tiktok_sign_url == DEFAULT_SIGN_URL, "a fresh instance: tests change the live one"


def test_the_default_locale_is_documented_and_stable() -> None:
    defaults = settings()

    assert (defaults.language, defaults.region, defaults.timezone) == ("en", "US", "America/New_York")


async def test_a_prepared_client_keeps_the_sign_servers_settings_and_logs_in() -> None:
    """The verified sign client replaces the library's with the same URL, API key and timeout."""
    from TikTokLive import TikTokLiveClient

    configured = settings(
        sign_api_url="https://sign.example",
        sign_api_key="key-1",
        session_id="c0ffee" * 6,
        tt_target_idc="useast2a",
        WHITELIST_AUTHENTICATED_SESSION_ID_HOST="sign.example",
    )
    client = TikTokLiveClient(**client_options.client_kwargs(configured, None))
    library_made = client.web.signer.sdk_client.get_async_httpx_client()

    client_options.prepare_client(client, configured)

    ours = client.web.signer.sdk_client.get_async_httpx_client()
    assert ours is not library_made
    assert str(ours.base_url) == "https://sign.example"
    assert ours.headers["X-Api-Key"] == "key-1"
    assert ours.headers["User-Agent"] == library_made.headers["User-Agent"]
    assert ours.timeout == library_made.timeout
    assert client.web.cookies.get("sessionid") == "c0ffee" * 6
    await ours.aclose()
    await library_made.aclose()
    await client.web.close()
