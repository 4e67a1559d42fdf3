"""`make chaos` in small: one scenario (a connector SIGKILLed mid-room) through the whole stack.

The full suite is a benchmark-style script (`benchmarks/chaos/`, minutes long); this runs its
quickest scenario end to end so the script itself cannot rot: the control plane, node agents,
operator, persister, Redis pair, PostgreSQL and simulator come up, a few hundred events are
sent, the connector is killed, and every event must be stored exactly once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_killed_connector_loses_and_doubles_nothing_through_the_whole_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--quick", "--only", "connector-sigkill", "--events", "300"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("connector-sigkill")]
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert lines, result.stdout
    _name, sent, once, lost, doubled = lines[-1][:5]
    assert (int(sent), int(once), int(lost), int(doubled)) == (300, 300, 0, 0), result.stdout
