"""How the operator logs in to the API server, and what it does while its credentials are refused.

kopf calls the login handler at start and again every time the API server answers 401,
and retries the refused request with whatever the handler returns. kopf remembers refused
credentials by equality, but a session it is given is a new object each time, so handing
out the same refused token again made a hot loop: ~100 logins a second, forever, and since
kopf's last act when stopping (removing this replica from the KopfPeering) goes through
the same loop, SIGTERM went unheard until the kubelet's SIGKILL. That is what happens to
every operator pod on `helm uninstall`, which deletes the ServiceAccount first.

So each login first asks the API server whether it accepts the credentials (`GET /version`
with them; authentication comes before any authorization, so a refused token gets 401
whatever the path). Accepted, or the API server unreachable (an outage kopf's own retries
cover): hand them to kopf. Refused: say so (an error line, a counter, `/healthz` failing,
so the liveness probe restarts a pod whose token was revoked) and try again with backoff,
re-reading a token file each time, since a rotated token is the usual cure. Once the
operator is stopping, a refusal ends the login with no credentials: kopf gives up on what
it was doing (the peering clean-up, which the peers' lifetime check makes unnecessary)
and the process exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass
from typing import Final

import aiohttp
import kopf

from tiktok_service.kube_rest import Credentials
from tiktok_service.operator import k8s
from tiktok_service.operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

#: Seconds before asking again after the n-th consecutive refusal (the last one repeats).
BACKOFF_S: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
_CHECK_TIMEOUT_S: Final = 10.0


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"  # HTTP 401
    UNKNOWN = "unknown"  # unreachable, timed out, any other answer: not a verdict on the credentials


@dataclass(frozen=True)
class Step:
    """What the login does next: hand the credentials to kopf, give up, or wait `delay_s` and ask again."""

    action: str  # "use" | "give_up" | "retry"
    delay_s: float = 0.0


def next_step(verdict: Verdict, *, refusals: int, stopping: bool) -> Step:
    """The decision after one check; `refusals` counts consecutive refusals including this one."""
    if verdict is not Verdict.REFUSED:
        return Step("use")
    if stopping:
        return Step("give_up")
    return Step("retry", BACKOFF_S[min(max(refusals, 1), len(BACKOFF_S)) - 1])


class Login:
    """kopf's login handler (`await login()`), with the state `/healthz` and the metrics show."""

    def __init__(
        self, credentials: Credentials, metrics: OperatorMetrics, stopping: asyncio.Event, *, max_connections: int
    ) -> None:
        self._credentials = credentials
        self._metrics = metrics
        self._stopping = stopping
        self._max_connections = max_connections
        self.refusals = 0

    @property
    def refused(self) -> bool:
        """True while the API server refuses the operator's current credentials."""
        return self.refusals > 0

    async def __call__(self) -> kopf.AiohttpSession | None:
        while True:
            self._credentials.forget_token()  # a token file may hold a renewed token by now
            verdict = await self._check()
            if verdict is Verdict.REFUSED:
                self.refusals += 1
                self._metrics.logins_refused.inc()
            elif self.refusals:
                log.warning("the API server accepts the operator's credentials again", extra={"after": self.refusals})
                self.refusals = 0
            self._metrics.credentials_refused.set(1 if self.refused else 0)
            step = next_step(verdict, refusals=self.refusals, stopping=self._stopping.is_set())
            if step.action == "use":
                return k8s.kopf_session(self._credentials, max_connections=self._max_connections)
            if step.action == "give_up":
                log.error(
                    "the API server refused the operator's credentials (HTTP 401) while stopping: "
                    "leaving without removing this replica from the peering"
                )
                return None
            log.error(
                "the API server refused the operator's credentials (HTTP 401): its ServiceAccount or token "
                "was deleted or revoked; retrying",
                extra={"refusals": self.refusals, "retry_in_s": step.delay_s},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), step.delay_s)

    async def _check(self) -> Verdict:
        """Ask the API server whether it accepts the credentials; stopping cuts the wait short."""
        token = self._credentials.authorization()
        headers = {"Authorization": token} if token else {}
        timeout = aiohttp.ClientTimeout(total=_CHECK_TIMEOUT_S)
        url = self._credentials.server.rstrip("/") + "/version"
        try:
            connector = aiohttp.TCPConnector(ssl=self._credentials.ssl_context())
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get(url, headers=headers) as answer,
            ):
                if answer.status == 401:
                    return Verdict.REFUSED
                return Verdict.ACCEPTED if answer.status < 400 else Verdict.UNKNOWN
        except (aiohttp.ClientError, TimeoutError, OSError) as failed:
            log.warning("could not check the operator's credentials", extra={"error": repr(failed)})
            return Verdict.UNKNOWN
