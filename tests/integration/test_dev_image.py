"""The simulator image (Dockerfile.dev, `make image-dev`): the product image plus the dev distribution.

It runs the simulator as the dev chart's pod does — uid 10001, read-only root, no capabilities,
nothing writable — and serves TikTok's pages and its control API. The product image, built from
the same sources, still has none of the dev distribution. Needs only a container engine (the
dev install on a real node is test_dev_install_kubelet.py).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e_support import wait_for
from tests.integration.test_image import ENGINE, RESTRICTED, engine, run_in_image
from tiktok_service_dev.processes import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # a cold build of both images runs in the first setup
    pytest.mark.skipif(ENGINE is None, reason="no container engine (podman or a Docker daemon)"),
]

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = os.environ.get("TEST_IMAGE", "tiktok-service:test")
DEV = os.environ.get("TEST_DEV_IMAGE", "tiktok-service-dev:test")


def build(env: dict[str, str]) -> None:
    assert ENGINE is not None
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image.sh")],
        env={**os.environ, "CONTAINER_ENGINE": ENGINE, **env},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, f"image build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    build({"IMAGE": PRODUCT})
    build({"TARGET": "dev", "IMAGE": DEV, "PRODUCT_IMAGE": PRODUCT})
    return PRODUCT, DEV


HAS_DEV = (
    "import importlib.util as u, shutil; "
    "print(u.find_spec('tiktok_service_dev') is not None, bool(shutil.which('tiktok-service-dev')))"
)


def test_only_the_simulator_image_carries_the_dev_distribution(images: tuple[str, str]) -> None:
    product, dev = images

    assert run_in_image(product, ["python3", "-c", HAS_DEV]).stdout.split() == ["False", "False"]
    assert run_in_image(dev, ["python3", "-c", HAS_DEV]).stdout.split() == ["True", "True"]
    assert run_in_image(dev, ["pip", "check"]).returncode == 0
    assert run_in_image(dev, ["python3", "-c", "import os; print(os.getuid())"]).stdout.strip() == "10001"


@pytest.fixture
def simulator(images: tuple[str, str]) -> Iterator[str]:
    """The dev chart's simulator command from the image, restricted as its pod is; its base URL."""
    port, name = free_port(), f"tiktok-simulator-{uuid.uuid4().hex[:8]}"
    argv = ["tiktok-service-dev", "simulator", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--auto-create", "--mix-preset", "realistic", "--log-level", "INFO"]
    engine("run", "-d", "--name", name, *RESTRICTED, "--network=host", images[1], *argv)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        logs = engine("logs", name, check=False)
        engine("rm", "-f", name, check=False)
        print(logs.stdout[-2000:], logs.stderr[-2000:])


def test_the_simulator_runs_from_its_image_read_only_as_uid_10001(simulator: str) -> None:
    def health() -> dict[str, object] | None:
        try:
            answer = httpx.get(f"{simulator}/_sim/health", timeout=2)
        except httpx.TransportError:
            return None
        return answer.json() if answer.status_code == 200 else None

    assert wait_for(health, what="the simulator's health endpoint", timeout=60)["ok"] is True
    page = httpx.get(f"{simulator}/@image_streamer/live", timeout=10)  # any username is a live room
    assert page.status_code == 200
    rooms = httpx.get(f"{simulator}/_sim/rooms", timeout=10).json()["rooms"]
    assert "image_streamer" in str(rooms)
