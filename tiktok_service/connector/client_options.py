"""How a connector's connection options reach TikTokLive, through the library's own knobs.

* **Where TikTok is**: `WebDefaults` URLs (our simulator in dev and tests), the sign server
  URL both as the signer's base and as `WebDefaults.tiktok_sign_url`, which is what the
  library compares its session consent switch against.
* **Locale**: TikTokLive picks a random location (language, region, time zone) at import, so
  every pod would look like it comes from a different country. We overwrite those client
  parameters with stable, configured values (`locale_params`, pure). Device and screen
  presets stay the library's pick: they vary per process, as browsers do.
* **Proxies**: web requests through httpx (`web_proxy` for HTTP CONNECT; for SOCKS5 an
  httpx-socks transport, i.e. python-socks, because httpcore's own SOCKS connection leaves its
  socket to the proxy open when the proxy refuses the login) and the WebSocket through `ws_proxy`
  (python-socks, via the library's `WebcastProxyConnect`), all from the same `ProxyEndpoint`.
* **Session**: `client.web.set_session(sessionid, tt_target_idc)`, exactly as the library
  documents it: the cookies go to TikTok's web routes and WebSocket, and the library sends
  them to the sign server with the WebSocket fetch. The library refuses that unless
  `WHITELIST_AUTHENTICATED_SESSION_ID_HOST` names the sign server's host; the settings carry
  that consent and we hand it to the library in the variable it reads.
* **Sign server TLS**: the library's sign client does not verify certificates; we give it one
  that does (`verify_sign_server_tls`), for every connector, with or without a session.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_socks import AsyncProxyTransport
from TikTokLive import TikTokLiveClient
from TikTokLive.client.logger import TikTokLiveLogHandler
from TikTokLive.client.web.web_settings import WebDefaults

from tiktok_service.connector.redaction import Redactor
from tiktok_service.domain.proxies import ProxyEndpoint
from tiktok_service.settings import ConnectorSettings

#: TikTokLive reads its consent to send a session to the sign server from this variable.
SESSION_CONSENT_VARIABLE = "WHITELIST_AUTHENTICATED_SESSION_ID_HOST"

#: Scrubs every credential the connector holds from status text and library log lines.
REDACTOR = Redactor()
#: Loggers of the libraries a connection goes through. A logger's filter sees only the records
#: logged on it, so each is named. httpx logs every request URL at INFO, and the sign server's
#: URL carries the session (`session_id=`); TikTokLive logs the WebSocket cookie string.
LIBRARY_LOGGERS = (
    TikTokLiveLogHandler.LOGGER_NAME,
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "websockets.client",
    "websockets.protocol",
)


@dataclass(frozen=True, slots=True)
class LocaleParams:
    """Client parameters and headers that tell TikTok where the viewer is."""

    web: dict[str, str]
    ws: dict[str, str]
    headers: dict[str, str]


def locale_params(language: str, region: str, timezone: str) -> LocaleParams:
    """The parameters TikTokLive fills from its random `Location` preset, from fixed values."""
    lang_country = f"{language}-{region}"
    ws = {"app_language": language, "browser_language": lang_country, "tz_name": timezone, "webcast_language": language}
    web = {**ws, "priority_region": region, "region": region}
    return LocaleParams(web=web, ws=ws, headers={"Accept-Language": f"{lang_country},{language};q=0.9"})


def secrets_of(settings: ConnectorSettings) -> set[str]:
    """Every credential in `settings`, for scrubbing."""
    found: set[str] = set()
    for proxy in settings.proxy_endpoints:
        found |= proxy.secrets
    if settings.session_id is not None:
        session = settings.session_id.get_secret_value()
        found.add(session)
        if len(session) >= 16:
            found.add(session[:8])  # TikTokLive logs this prefix of a session id
    return found


def configure_library(settings: ConnectorSettings) -> None:
    """Process-wide TikTokLive settings (`WebDefaults` is a module global of the library)."""
    if settings.tiktok_app_url:
        WebDefaults.tiktok_app_url = settings.tiktok_app_url.rstrip("/")
    if settings.tiktok_webcast_url:
        WebDefaults.tiktok_webcast_url = settings.tiktok_webcast_url.rstrip("/")
    if settings.sign_api_url:
        WebDefaults.tiktok_sign_url = settings.sign_api_url.rstrip("/")
    locale = locale_params(settings.language, settings.region, settings.timezone)
    WebDefaults.web_client_params = {**WebDefaults.web_client_params, **locale.web}
    WebDefaults.ws_client_params = {**WebDefaults.ws_client_params, **locale.ws}
    WebDefaults.web_client_headers = {**WebDefaults.web_client_headers, **locale.headers}
    if settings.session_sign_host:
        os.environ[SESSION_CONSENT_VARIABLE] = settings.session_sign_host
    else:
        os.environ.pop(SESSION_CONSENT_VARIABLE, None)
    REDACTOR.update(secrets_of(settings))
    TikTokLiveLogHandler.get_logger()  # creates the library's logger as the library configures it
    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        if REDACTOR not in library_logger.filters:
            library_logger.addFilter(REDACTOR)


async def raise_on_rate_limit(response: httpx.Response) -> None:
    """httpx response hook of the web client: TikTok's 429 becomes an error at once.

    TikTokLive reads TikTok's pages without checking the status, so a rate-limited answer
    would surface later as an unparseable page; raised here, it is told apart (and moves the
    connector to its next proxy). The sign server has its own client and its own 429 handling.
    """
    if response.status_code == 429:
        response.raise_for_status()


def client_kwargs(settings: ConnectorSettings, proxy: ProxyEndpoint | None) -> dict[str, Any]:
    """Constructor arguments of a `TikTokLiveClient` for one connection attempt."""
    signer: dict[str, Any] = {}
    if settings.sign_api_url:
        signer["sign_api_base"] = settings.sign_api_url
    if settings.sign_api_key:
        signer["sign_api_key"] = settings.sign_api_key
    kwargs: dict[str, Any] = {
        "unique_id": settings.username,
        "web_kwargs": {
            "signer_kwargs": signer,
            "httpx_kwargs": {"timeout": settings.http_timeout_s, "event_hooks": {"response": [raise_on_rate_limit]}},
        },
        "ws_kwargs": {"max_size": settings.max_frame_bytes, "close_timeout": 5},
    }
    if proxy is not None:
        if proxy.scheme == "socks5":
            kwargs["web_kwargs"]["httpx_kwargs"]["transport"] = AsyncProxyTransport.from_url(proxy.url)
        else:
            kwargs["web_proxy"] = httpx.Proxy(proxy.url)
        # The library converts an httpx.Proxy for the WebSocket (credentials kept).
        kwargs["ws_proxy"] = httpx.Proxy(proxy.url)
        kwargs["ws_kwargs"]["proxy_conn_timeout"] = settings.http_timeout_s
    return kwargs


def verify_sign_server_tls(client: TikTokLiveClient) -> None:
    """Make the client's sign server connection verify the server's TLS certificate.

    TikTokLive builds its sign client (EulerApiSdk) with `verify_ssl=False`, so anyone on the
    path to an `https` sign server could impersonate it; with a session configured, that request
    carries the account's `session_id`. We replace the SDK's HTTP client, through its own
    `set_async_httpx_client`, with one of identical settings (base URL, headers with the API key,
    cookies, timeout, redirects) that verifies: certifi's CAs, or `SSL_CERT_FILE`/`SSL_CERT_DIR`
    when set (httpx reads them). A plain `http` sign URL (the simulator) has nothing to verify.
    """
    sdk = client.web.signer.sdk_client
    unverified = sdk.get_async_httpx_client()  # built by the SDK from its settings; never opened
    sdk.set_async_httpx_client(
        httpx.AsyncClient(
            base_url=unverified.base_url,
            headers=unverified.headers,
            cookies=unverified.cookies,
            timeout=unverified.timeout,
            follow_redirects=unverified.follow_redirects,
            verify=True,
        )
    )


def prepare_client(client: TikTokLiveClient, settings: ConnectorSettings) -> None:
    """What a new client needs before its first request: a verified sign server, then the session."""
    verify_sign_server_tls(client)
    apply_session(client, settings)


def apply_session(client: TikTokLiveClient, settings: ConnectorSettings) -> None:
    """Log the client in with the configured session, the way TikTokLive documents it."""
    if settings.session_id is not None and settings.session_id.get_secret_value():
        client.web.set_session(settings.session_id.get_secret_value(), settings.tt_target_idc)


def scrub(text: str) -> str:
    return REDACTOR.scrub(text)
