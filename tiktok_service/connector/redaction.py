"""Keeping credentials out of what a connector shows: logs, status, events, metrics.

Our own code only ever prints a proxy's redacted form (`ProxyEndpoint.redacted`). Two things
remain that we do not write ourselves:

* text of exceptions raised by the libraries (stored as the status' `last_error`, which the
  operator copies into the Livestream's status and events): `Redactor.scrub` removes every
  known secret and every credential-bearing URL from it;
* TikTokLive's own log lines: it logs the WebSocket cookie string of a logged-in session with
  the first 8 characters of the `sessionid` in clear. `Redactor` is also a logging filter,
  attached to the library's logger (all of its modules log through that one logger).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final

from tiktok_service.domain.proxies import REDACTED

#: `scheme://user:password@` in any URL.
_URL_CREDENTIALS: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@")
#: TikTok's session cookies, as a cookie string or a log line quotes them.
_SESSION_COOKIES: Final = re.compile(
    r"(?P<name>\b(?:sessionid|sessionid_ss|sid_tt|sid_guard|uid_tt|session_id)\b\s*[=:]\s*)[^;&\s,)\"']+",
    re.IGNORECASE,
)
_SESSION_ID_NOTE: Final = re.compile(r"(?P<name>Session ID:\s*)[^)\s]+")


class Redactor(logging.Filter):
    """Removes secrets from text; as a logging filter, from a record's message and arguments."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole. Short strings are not
        # secrets worth matching (a 1-3 character password would blank half of every line).
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
        text = _SESSION_COOKIES.sub(lambda m: f"{m['name']}{REDACTED}", text)
        return _SESSION_ID_NOTE.sub(lambda m: f"{m['name']}{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
