"""How the test node stops its kubelet and containerd (tests/node_runtime.py `terminate`): SIGTERM
first, SIGKILL only for a process still there after the grace, and always reaped."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.node_runtime import terminate

_IGNORES_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
)


def test_a_process_that_stops_on_sigterm_is_not_killed() -> None:
    process = subprocess.Popen(["sleep", "60"])

    terminate(process)

    assert process.returncode == -signal.SIGTERM


def test_a_process_still_there_after_the_grace_is_killed_and_reaped() -> None:
    process = subprocess.Popen([sys.executable, "-c", _IGNORES_SIGTERM], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on

    terminate(process, grace_s=0.5)

    assert process.returncode == -signal.SIGKILL
    process.stdout.close()
