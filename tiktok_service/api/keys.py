"""API keys (pure): how a key looks, how it is made and how it is stored.

A key is `tsk_` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored:
with that much entropy a leaked hash reveals nothing, and no slow hash is needed, so
checking a key costs one index probe. The shape is checked before any lookup, so a
malformed token never reaches the database.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "tsk_"
_RANDOM_BYTES: Final = 32
_SHAPE: Final = re.compile(r"^tsk_[A-Za-z0-9_-]{43}$")
#: How much of a key is stored in clear to tell keys apart in listings (not enough to guess it).
SHOWN_CHARS: Final = len(PREFIX) + 6


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str  # shown once, never stored
    digest: bytes
    shown: str


def generate() -> NewKey:
    secret = PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)
    return NewKey(secret=secret, digest=digest(secret), shown=secret[:SHOWN_CHARS])


def well_formed(secret: str) -> bool:
    return _SHAPE.fullmatch(secret) is not None


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
