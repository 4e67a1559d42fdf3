"""The pinned Helm (`make helm`) and the chart, for the chart's tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Final

import pytest

REPO: Final = Path(__file__).resolve().parents[1]
CHART: Final = REPO / "charts" / "tiktok-service"
VALUES_FILES: Final = {
    "default": None,
    "dev": CHART / "values-dev.yaml",
    "manifests": CHART / "values-manifests.yaml",
}
RELEASE: Final = "tiktok-service"


def render_manifests_script() -> ModuleType:
    """scripts/render_manifests.py (standard library only, so `make manifests` needs no venv)."""
    spec = importlib.util.spec_from_file_location("render_manifests", REPO / "scripts" / "render_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def helm_binary() -> Path:
    """The Helm of scripts/helm.env, or fail saying how to build it."""
    path: Path = render_manifests_script().helm_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm not found at {path}: run `make helm` (builds it from Go modules, once)", pytrace=False)
    return path


@cache
def _helm_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="tiktok-helm-home-"))


def helm(*args: str, kubeconfig: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [str(helm_binary()), *args]
    if kubeconfig is not None:
        command.append(f"--kubeconfig={kubeconfig}")
    # A clean Helm home: no repositories, plugins or registry logins of the machine.
    home = _helm_home()
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache")}
    env["HELM_DATA_HOME"] = str(home / "data")
    env.pop("KUBECONFIG", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)


def template(values: Path | None, *extra: str, namespace: str = RELEASE) -> str:
    """`helm template` of the chart with one values file; fails the test with Helm's message."""
    args = ["template", RELEASE, str(CHART), "--namespace", namespace, *extra]
    if values is not None:
        args += ["--values", str(values)]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout
