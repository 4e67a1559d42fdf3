"""The CustomResourceDefinitions the product installs, shipped as package data.

`livestream.yaml` defines the `Livestream` resource the operator reconciles and the API
serves; `kopfpeering.yaml` is kopf's peering resource, which lets two operator replicas
agree on one active leader. Reading them through `importlib.resources` works the same
from a checkout, a wheel or the image (no path on the machine is assumed).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

SUFFIX = ".yaml"


def names() -> list[str]:
    """Every CRD file in the package, without its suffix (`kopfpeering`, `livestream`)."""
    return sorted(
        entry.name.removesuffix(SUFFIX) for entry in resources.files(__name__).iterdir() if entry.name.endswith(SUFFIX)
    )


def text(name: str) -> str:
    """The YAML of one CRD file (`livestream`), as written in the repository."""
    return resources.files(__name__).joinpath(f"{name}{SUFFIX}").read_text(encoding="utf-8")


def documents(name: str) -> list[dict[str, Any]]:
    """Every CRD in one file (`kopfpeering` holds kopf's namespaced and cluster-wide ones)."""
    return [doc for doc in yaml.safe_load_all(text(name)) if doc]


def load(name: str) -> dict[str, Any]:
    """The CRD of a file that holds exactly one (`livestream`)."""
    (doc,) = documents(name)
    return doc


def manifests() -> list[dict[str, Any]]:
    """Every CRD of every file, ready to apply."""
    return [doc for name in names() for doc in documents(name)]
