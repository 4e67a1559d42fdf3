"""The product image, built by `scripts/build-image.sh` and run as the pods run it.

Every entry point starts from the image as uid 10001 on a read-only root filesystem with no
capabilities and no writable mount; `migrate` and `api` do a real start against this test's
PostgreSQL, Redis and Kubernetes API server (host network: they listen on loopback only).
Skipped only where no container engine exists (neither podman nor a Docker daemon: `make deps`
installs podman).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from tests.cluster_support import started_control_plane
from tests.support import wait_until
from tiktok_service.operator import model
from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import ControlPlane
from tiktok_service_dev.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("TEST_IMAGE", "tiktok-service:test")
# The image's own budget (uncompressed, the layers on top of the base: 59 MB when set). The base
# is the official python:3.11-slim-bookworm or its local stand-in; see README "Image".
PRODUCT_LAYERS_BUDGET_MB = 80


def _engine() -> str | None:
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        return "docker"
    return None


ENGINE = _engine()
pytestmark = [
    pytest.mark.slow,
    # A cold build (the stand-in base from Debian packages, then the dependencies) runs in the
    # first test's setup: ~5 min on 2 busy cores.
    pytest.mark.timeout(1500),
    pytest.mark.skipif(
        ENGINE is None, reason="no container engine (podman or a Docker daemon); `make deps` installs podman"
    ),
]


def engine(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert ENGINE is not None
    runtime = ["--runtime", "runc"] if ENGINE == "podman" else []
    return subprocess.run([ENGINE, *runtime, *args], capture_output=True, text=True, timeout=timeout, check=check)


# How every pod runs the image: non-root, read-only root, nothing writable, no privileges.
RESTRICTED = (
    "--read-only",
    "--user=10001:10001",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--ulimit=nofile=20000:20000",
    "--ulimit=nproc=4096:4096",
)


def run_in_image(
    image: str, argv: Sequence[str], *, options: Sequence[str] = ("--network=none",)
) -> subprocess.CompletedProcess[str]:
    return engine("run", "--rm", *RESTRICTED, *options, image, *argv)


@pytest.fixture(scope="module")
def image() -> str:
    """Build (cached layers make a warm build fast); the build output is shown when it fails."""
    env = {**os.environ, "IMAGE": IMAGE}
    if ENGINE is not None:
        env["CONTAINER_ENGINE"] = ENGINE
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, f"image build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return IMAGE


def test_image_runs_as_uid_10001_within_its_size_budget(image: str) -> None:
    config = json.loads(engine("image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == "10001"
    base = json.loads(engine("image", "inspect", "python:3.11-slim-bookworm").stdout)[0]
    added_mb = (config["Size"] - base["Size"]) / 1e6
    assert added_mb <= PRODUCT_LAYERS_BUDGET_MB, f"the product layers take {added_mb:.0f} MB"
    uid = run_in_image(image, ["python3", "-c", "import os; print(os.getuid(), os.getgid())"])
    assert uid.stdout.split() == ["10001", "10001"]


def test_the_image_ships_no_kubernetes_client(image: str) -> None:
    probe = "import importlib.util as u; print(u.find_spec('kubernetes') is None)"
    assert run_in_image(image, ["python3", "-c", probe]).stdout.strip() == "True"


# Bytecode is compiled at build time: on a read-only root nothing can be cached at run time, and
# importing from source takes about twice as long at every start. A pyc whose recorded source
# mtime/size differs from its source is ignored by Python, so each must match.
BYTECODE_CHECK = """
import importlib.util, pathlib, sysconfig
missing, stale = [], []
for py in pathlib.Path(sysconfig.get_paths()["purelib"]).rglob("*.py"):
    pyc = pathlib.Path(importlib.util.cache_from_source(str(py)))
    if not pyc.exists():
        missing.append(str(py))
        continue
    header, st = pyc.read_bytes()[:16], py.stat()
    if int.from_bytes(header[4:8], "little") == 0 and (
        int.from_bytes(header[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
        or int.from_bytes(header[12:16], "little") != st.st_size & 0xFFFFFFFF
    ):
        stale.append(str(py))
print(len(missing), len(stale), *(missing + stale)[:10])
"""


def test_bytecode_is_compiled_and_current(image: str) -> None:
    missing, stale, *examples = run_in_image(image, ["python3", "-c", BYTECODE_CHECK]).stdout.split()
    assert (missing, stale) == ("0", "0"), examples


@pytest.mark.parametrize("command", ["connector", "persister", "migrate", "access", "operator", "api", "api-keys"])
def test_each_entry_point_starts_from_the_image(image: str, command: str) -> None:
    """`--help` imports the command's whole module tree (its handler imports before parsing)."""
    done = run_in_image(image, ["tiktok-service", command, "--help"])
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    with started_control_plane(wait_for_controllers=False) as cp:
        yield cp


def readable_copy(path: Path, directory: Path) -> Path:
    """The kubeconfig readable by uid 10001 inside the container (the original is 0600, root's)."""
    copy = directory / path.name
    copy.write_bytes(path.read_bytes())
    copy.chmod(0o644)
    return copy


async def test_migrate_then_api_serve_from_the_image(
    image: str, database_url: str, redis_url: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    host_network = ("--network=host",)
    migrated = run_in_image(
        image, ["tiktok-service", "migrate"], options=(*host_network, f"--env=PERSISTER_DATABASE_URL={database_url}")
    )
    assert migrated.returncode == 0, migrated.stderr

    kubeconfig = readable_copy(control_plane.kubeconfig_path, tmp_path)
    port = free_port()
    name = f"tiktok-image-api-{port}"
    started = engine(
        "run", "--detach", "--name", name, *RESTRICTED, *host_network,
        f"--volume={kubeconfig}:/etc/tiktok/kubeconfig:ro",
        "--env=API_KUBECONFIG=/etc/tiktok/kubeconfig",
        f"--env=API_DATABASE_URL={database_url}",
        f"--env=API_REDIS_URL={redis_url}",
        "--env=API_HOST=127.0.0.1",
        f"--env=API_PORT={port}",
        "--env=API_NAMESPACE=default",
        image, "tiktok-service", "api",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def ready() -> bool:
                state = engine("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
                assert state.stdout.strip() == "true", engine("logs", name, check=False).stderr[-3000:]
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout=60, what="the API in the image to be ready", interval=0.2)
            checks = (await client.get("/readyz")).json()["checks"]
            assert checks == {"postgresql": "ok", "redis": "ok", "kubernetes": "ok"}
        stopped = engine("stop", "--time=20", name)
        assert stopped.returncode == 0
        exit_code = engine("container", "inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert exit_code == "0", engine("logs", name, check=False).stderr[-3000:]
    finally:
        engine("rm", "--force", name, check=False)


async def test_operator_from_the_image_makes_a_connector_pod(
    image: str, database_url: str, redis_url: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """kopf's watch and our REST writes, with the kubeconfig read by the image's own reader."""
    migrated = run_in_image(
        image, ["tiktok-service", "migrate"], options=("--network=host", f"--env=PERSISTER_DATABASE_URL={database_url}")
    )
    assert migrated.returncode == 0, migrated.stderr
    kubeconfig = readable_copy(control_plane.kubeconfig_path, tmp_path)
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as api:
        operator_harness.create_peering(api, namespace="default", name="tiktok-operator")  # as deployed (two replicas)
    port = free_port()
    name = f"tiktok-image-operator-{port}"
    started = engine(
        "run", "--detach", "--name", name, *RESTRICTED, "--network=host",
        f"--volume={kubeconfig}:/etc/tiktok/kubeconfig:ro",
        "--env=OPERATOR_KUBECONFIG=/etc/tiktok/kubeconfig",
        f"--env=OPERATOR_DATABASE_URL={database_url}",
        f"--env=OPERATOR_REDIS_URL={redis_url}",
        f"--env=OPERATOR_HTTP_PORT={port}",
        '--env=OPERATOR_NAMESPACES=["default"]',
        f"--env=OPERATOR_CONNECTOR_IMAGE={image}",
        image, "tiktok-service", "operator",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    livestream = {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": f"image-{port}"},
        "spec": {"username": "image_user"},
    }
    try:
        with config.new_client_from_config(config_file=str(control_plane.kubeconfig_path)) as api:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                model.GROUP, model.VERSION, "default", model.PLURAL, livestream
            )
            core = client.CoreV1Api(api)
            selector = f"{model.LABEL_LIVESTREAM}=image-{port}"

            def pod_made() -> bool:
                state = engine("container", "inspect", "--format", "{{.State.Running}}", name, check=False)
                assert state.stdout.strip() == "true", engine("logs", name, check=False).stderr[-3000:]
                return bool(core.list_namespaced_pod("default", label_selector=selector).items)

            try:
                await wait_until(
                    pod_made, timeout=60, what="a connector pod from the operator in the image", interval=0.3
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{engine('logs', name, check=False).stderr[-3000:]}") from None
            (pod,) = core.list_namespaced_pod("default", label_selector=selector).items
            assert pod.spec.containers[0].image == image
        assert engine("stop", "--time=20", name).returncode == 0
        exit_code = engine("container", "inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert exit_code == "0", engine("logs", name, check=False).stderr[-3000:]
    finally:
        engine("rm", "--force", name, check=False)
