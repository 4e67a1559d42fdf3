"""The README's Install section, run as written against a real API server.

The commands are read from README.md — the Helm block and the plain-manifests command — and run
with bash from the repository root; `kubectl` and `helm` on PATH are the pinned builds pointed at
the test's control plane. Only the placeholders are filled in (passwords and hosts: `PW@...`), and
the final `get ls -w` does not watch. No node runs here: what is checked is that every command
succeeds and leaves the objects it promises. The workloads running from these objects are the
kubelet install tests' part (test_helm_install_kubelet.py, test_dev_install_kubelet.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_support import started_control_plane
from tests.helm_support import helm_binary
from tiktok_service_dev.controlplane import ControlPlane, binaries_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "tiktok-service"


def install_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Install\n")
    return text[start : text.index("\n## ", start + 1)]


def helm_block() -> str:
    """The section's shell block, placeholders filled in, without the endless watch."""
    block = re.search(r"```sh\n(.*?)```", install_section(), re.S)
    assert block is not None, "no ```sh block in the README's Install section"
    script = block.group(1).replace("PW@...", "not-a-secret@db.example:5432/tiktok")
    assert script.rstrip().endswith(" -w"), "the block ends with a watch the test expected to drop"
    return script.rstrip()[: -len(" -w")] + "\n"


def manifests_command() -> str:
    """The plain-manifests install command (inline code naming deploy/namespace.yaml)."""
    found = re.findall(r"`(kubectl apply [^`]*deploy/namespace\.yaml[^`]*)`", install_section())
    assert len(found) == 1, found
    return str(found[0])


def run_as_reader(script: str, control_plane: ControlPlane, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`script` in bash from the repository root, `kubectl`/`helm` pointed at `control_plane`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    kubeconfig = control_plane.kubeconfig_path
    for name, binary in (("kubectl", binaries_dir() / "kubectl"), ("helm", helm_binary())):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {binary} --kubeconfig={kubeconfig} "$@"\n')
        wrapper.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"),
        "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache"),
        "HELM_DATA_HOME": str(tmp_path / "helm" / "data"),
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def control_plane() -> Iterator[ControlPlane]:
    """A fresh cluster per install method (both install the same cluster-wide objects)."""
    with started_control_plane(crds=False, wait_for_controllers=False) as cp:
        yield cp


def kubectl(control_plane: ControlPlane, *args: str) -> str:
    argv = [str(binaries_dir() / "kubectl"), f"--kubeconfig={control_plane.kubeconfig_path}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def assert_installed(control_plane: ControlPlane) -> None:
    deployments = kubectl(control_plane, "-n", NAMESPACE, "get", "deployments", "-o", "name").split()
    assert sorted(deployments) == [
        "deployment.apps/tiktok-api",
        "deployment.apps/tiktok-operator",
        "deployment.apps/tiktok-persister",
    ]
    assert kubectl(control_plane, "-n", NAMESPACE, "get", "ls", "-o", "name").split() == [
        "livestream.tiktok.tiktok-service.io/example-streamer"
    ]


def test_the_helm_install_commands_of_the_readme_work_as_written(control_plane: ControlPlane, tmp_path: Path) -> None:
    done = run_as_reader(helm_block(), control_plane, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert_installed(control_plane)
    secrets = kubectl(control_plane, "-n", NAMESPACE, "get", "secrets", "-o", "name").split()
    assert {f"secret/tiktok-{c}" for c in ("connector", "persister", "api", "operator", "admin")} <= set(secrets)


def test_the_plain_manifests_command_of_the_readme_works_as_written(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    done = run_as_reader(manifests_command() + " && kubectl apply -f examples/livestream.yaml", control_plane, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert_installed(control_plane)
