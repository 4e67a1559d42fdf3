"""Process-level simulator settings.

A plain dataclass on purpose: the simulator must not depend on the service's pydantic-settings model;
the CLI/env wiring builds a :class:`SimulatorConfig` and hands it to ``server.serve``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scenario import Scenario


@dataclass
class SimulatorConfig:
    """Where the simulator listens and which rooms exist at start-up."""

    host: str = "127.0.0.1"
    port: int = 8765  # 0 = pick a free port (see SimulatorServer.base_url)
    rooms: dict[str, Scenario] = field(default_factory=dict)  # username -> scenario
    auto_create_rooms: bool = False  # unknown usernames get a live room with default_scenario
    default_scenario: Scenario = field(default_factory=Scenario)
    fixtures_dir: str | None = None  # captured payloads directory; None = embedded copy
    public_url: str | None = None  # base URL advertised to clients (push_server); default: Host header
    sign_api_key: str | None = None  # if set, /webcast/fetch requires this X-Api-Key
    send_timeout_s: float = 10.0  # a socket that cannot take a frame for this long is aborted


def load_scenario_file(path: str | Path) -> dict[str, Scenario]:
    """Rooms from a JSON file: ``{"rooms": {"alice": {...scenario...}}}`` or ``{"alice": {...}}`` or
    ``[{"username": "alice", ...scenario...}]``."""
    raw: Any = json.loads(Path(path).read_text())
    if isinstance(raw, dict) and isinstance(raw.get("rooms"), (dict, list)):
        raw = raw["rooms"]
    rooms: dict[str, Scenario] = {}
    if isinstance(raw, list):
        for entry in raw:
            entry = dict(entry)
            username = str(entry.pop("username"))
            rooms[username] = Scenario.from_dict(entry)
    elif isinstance(raw, dict):
        for username, entry in raw.items():
            rooms[str(username)] = Scenario.from_dict(entry or {})
    else:
        raise ValueError("scenario file must hold an object or a list of rooms")
    return rooms


def parse_room_spec(spec: str) -> tuple[str, Scenario]:
    """``username[:seed[:rate]]`` (the ``--room`` CLI flag) -> (username, scenario)."""
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"bad room spec {spec!r}; expected username[:seed[:rate]]")
    kwargs: dict[str, Any] = {}
    if len(parts) > 1 and parts[1]:
        kwargs["seed"] = int(parts[1])
    if len(parts) > 2 and parts[2]:
        kwargs["rate"] = float(parts[2])
    return parts[0].lstrip("@"), Scenario(**kwargs)
