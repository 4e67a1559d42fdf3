"""One container as a local process: start, watch, restart with back-off, signal, kill.

The image is ignored; ``command`` + ``args`` run on the agent's machine with a PATH that
starts with the agent's venv ``bin`` (so ``tiktok-service connector`` is our console
script). Each process leads its own session/process group, so a signal reaches the
shell and everything it spawned, and the whole group is SIGKILLed when the main process
exits, like a container's PID namespace going away.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tiktok_service_dev.node_agent import env as environment
from tiktok_service_dev.node_agent import status
from tiktok_service_dev.node_agent.times import utc_now

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RestartBackoff:
    """Crash-loop back-off: kubelet defaults; tests shrink ``base_s``."""

    base_s: float = 10.0
    cap_s: float = 300.0
    # A container that ran this long without crashing starts its back-off afresh (kubelet: twice the cap).
    reset_after_s: float = 600.0
    # Retry interval while a Secret/ConfigMap the env needs is missing.
    config_retry_s: float = 1.0


def die_with_agent_hook() -> Callable[[], None] | None:
    """``preexec_fn`` asking the kernel to SIGKILL the child when the forking thread dies.

    The agent's event-loop thread forks every process and lives as long as the agent, so
    a SIGKILLed test run does not leave container processes behind.
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    signum = int(signal.SIGKILL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)

    return hook


def signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class ContainerRunner:
    """Runs one container until its restart policy lets it rest or it is told to stop.

    ``observation`` is the current truth (read by the pod's status writer after every
    ``on_change``); ``finished`` says no further restart will happen.
    """

    def __init__(
        self,
        container: Mapping[str, Any],
        *,
        pod_key: tuple[str, str, str],
        restart_policy: str,
        environment_for: Callable[[Mapping[str, Any]], Awaitable[dict[str, str]]],
        cwd: Path,
        log_path: Path,
        backoff: RestartBackoff,
        on_change: Callable[[], None],
        initial: status.ContainerObservation | None = None,
        run: bool = True,
    ) -> None:
        self.name = str(container["name"])
        self._container = container
        self._pod_key = pod_key
        self._restart_policy = restart_policy
        self._environment_for = environment_for
        self._cwd = cwd
        self._log_path = log_path
        self._backoff = backoff
        self._on_change = on_change
        self.observation = initial or status.creating(self.name)
        self._should_run = run
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self.finished = not run

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.returncode is None else None

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """No more restarts; signal the running process (SIGTERM first, SIGKILL later)."""
        self._stopping.set()
        if self.pid is not None:
            signal_group(self.pid, signum)

    async def run(self) -> None:
        """The container's whole life; returns once it will not run again."""
        if not self._should_run:
            return
        step = 0  # crash-loop back-off step
        try:
            while not self._stopping.is_set():
                env = await self._environment()
                if env is None:
                    continue
                ran_for = await self._run_once(env)
                state = self.observation.state
                assert isinstance(state, status.Terminated)
                if self._stopping.is_set() or not status.should_restart(self._restart_policy, state.exit_code):
                    break
                step = 0 if ran_for >= self._backoff.reset_after_s else step
                delay = status.crash_loop_delay(step, base=self._backoff.base_s, cap=self._backoff.cap_s)
                step += 1
                if delay > 0:
                    await self._crash_loop_wait(delay)
        finally:
            self.finished = True
            if self.pid is not None:  # cancelled mid-run: never leave the process behind
                signal_group(self.pid, signal.SIGKILL)

    async def _environment(self) -> dict[str, str] | None:
        """The env, or None after reporting CreateContainerConfigError and waiting to retry."""
        try:
            return await self._environment_for(self._container)
        except environment.ConfigError as exc:
            self._set(status.waiting(self.observation, "CreateContainerConfigError", str(exc)))
            await self._wait_stopping(self._backoff.config_retry_s)
            return None

    async def _run_once(self, env: dict[str, str]) -> float:
        """Start the process, wait for it to exit; returns how long it ran (seconds)."""
        argv = environment.command_line(self._container, env)
        started = utc_now()
        began = asyncio.get_running_loop().time()
        try:
            process = await self._spawn(argv, env)
        except OSError as exc:
            failed = status.terminated(
                status.START_ERROR_EXIT_CODE,
                started_at=None,
                finished_at=utc_now(),
                container_id=None,
                reason="StartError",
                message=str(exc),
            )
            self._set(status.started(self.observation, failed, container_id=None))
            return 0.0
        self._process = process
        if self._stopping.is_set():  # deleted while we were spawning: it gets its SIGTERM too
            signal_group(process.pid, signal.SIGTERM)
        container_id = f"local://{process.pid}"
        log.info("started container %s/%s/%s pid %d: %s", *self._pod_key[:2], self.name, process.pid, argv)
        self._set(status.started(self.observation, status.Running(started), container_id=container_id))
        returncode = await process.wait()
        signal_group(process.pid, signal.SIGKILL)  # whatever it left behind in its group
        code = status.exit_code_of(returncode)
        log.info("container %s/%s/%s pid %d exited %d", *self._pod_key[:2], self.name, process.pid, code)
        self._set(
            replace(
                self.observation,
                state=status.terminated(code, started_at=started, finished_at=utc_now(), container_id=container_id),
            )
        )
        return asyncio.get_running_loop().time() - began

    async def _spawn(self, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        executable, cwd = self._prepare(argv, env)
        with self._log_path.open("ab") as log_file:
            return await asyncio.create_subprocess_exec(
                executable,
                *argv[1:],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_agent_hook(),
            )

    def _prepare(self, argv: list[str], env: Mapping[str, str]) -> tuple[str, Path]:
        """Resolve the executable on the container's PATH and pick the working directory."""
        if not argv:
            raise FileNotFoundError(
                "container has no command: the local node agent cannot run image entrypoints, set `command`"
            )
        executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
        if executable is None:
            raise FileNotFoundError(f'exec: "{argv[0]}": executable file not found in $PATH')
        working_dir = self._container.get("workingDir")
        cwd = Path(working_dir) if working_dir and Path(working_dir).is_dir() else self._cwd
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        return executable, cwd

    async def _crash_loop_wait(self, delay: float) -> None:
        namespace, pod_name, uid = self._pod_key
        message = status.crash_loop_message(delay, self.name, pod_name, namespace, uid)
        self._set(status.waiting(self.observation, "CrashLoopBackOff", message))
        await self._wait_stopping(delay)

    async def _wait_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _set(self, observation: status.ContainerObservation) -> None:
        if observation != self.observation:
            self.observation = observation
            self._on_change()
