"""The connector's Redis client options, from its settings (pure).

Short timeouts turn a dead Redis into an error the publisher buffers through; the health
check pings an idle connection before use. With `redis_ca_file` (a `rediss://` URL, the CA
bundle the operator mounts) redis-py verifies Redis' certificate and host name against that
bundle instead of the system's CAs: without it a private CA could not be verified at all,
and a connector would have to choose between no TLS and TLS that trusts anyone.
"""

from __future__ import annotations

from typing import Any, Final

from tiktok_service.settings import ConnectorSettings

TIMEOUT_S: Final = 5
HEALTH_CHECK_INTERVAL_S: Final = 10


def redis_options(settings: ConnectorSettings) -> dict[str, Any]:
    """Keyword arguments of `redis.asyncio.from_url(settings.redis_url, **...)`."""
    options: dict[str, Any] = {
        "socket_timeout": TIMEOUT_S,
        "socket_connect_timeout": TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    if settings.redis_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
    return options
