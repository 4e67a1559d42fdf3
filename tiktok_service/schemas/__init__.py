"""The event contract as JSON Schema files (draft 2020-12), shipped as package data.

`envelope.schema.json` accepts any event; `<type>.schema.json` (e.g.
`tiktok.comment.schema.json`) accepts the events of one type. They are generated from
`tiktok_service.domain.event_schemas` by `tiktok-service-dev schemas` (or
`make schemas`); a unit test fails when they are stale.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

ENVELOPE = "envelope"


@functools.cache
def load(name: str) -> dict[str, Any]:
    """The schema of an event type (`tiktok.comment`) or of the envelope (`envelope`)."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def names() -> list[str]:
    """Every schema in the package: `envelope` and one per event type."""
    suffix = ".schema.json"
    return sorted(
        entry.name.removesuffix(suffix) for entry in resources.files(__name__).iterdir() if entry.name.endswith(suffix)
    )
