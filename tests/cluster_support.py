"""A fresh Kubernetes control plane for a test module (module-scoped fixtures build on it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import pytest
from kubernetes import config

from tiktok_service_dev import operator_harness
from tiktok_service_dev.controlplane import BinariesNotFoundError, ControlPlane, binaries_dir


@contextlib.contextmanager
def started_control_plane(
    *,
    extra_users: Sequence[str] = (),
    crds: bool = True,
    wait_for_controllers: bool = True,
    service_account_tokens: bool = False,
) -> Iterator[ControlPlane]:
    """etcd + API server (+ controllers) on free ports, with `crds/` installed; stopped on exit.

    `service_account_tokens`: the API server issues and accepts the tokens a kubelet projects into
    pods (see `ControlPlane`), for workloads that authenticate as their ServiceAccount.
    Missing binaries fail the test with the message saying how to build them (`make controlplane`).
    """
    try:
        binaries_dir()
    except BinariesNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    with ControlPlane(
        extra_users=extra_users,
        wait_for_controllers=wait_for_controllers,
        service_account_tokens=service_account_tokens,
    ) as cp:
        if crds:
            with config.new_client_from_config(config_file=str(cp.kubeconfig_path)) as api:
                operator_harness.install_crds(api)
        yield cp
