"""Key material and credential files the local control plane needs.

Only two secrets are generated here:

* the service-account RSA key pair (kube-apiserver verifies and signs service-account
  tokens with it, kube-controller-manager signs tokens for the token controller), made
  with the ``openssl`` CLI so the project does not depend on ``cryptography``;
* random bearer tokens for the static token file (``--token-auth-file``).

The apiserver's serving certificate is *not* generated here: kube-apiserver writes a
self-signed CA + serving certificate into ``--cert-dir`` on first start, and clients
trust that file (``apiserver.crt``) directly.
"""

from __future__ import annotations

import csv
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class OpenSSLNotFoundError(RuntimeError):
    """Raised when the ``openssl`` CLI needed for key generation is missing."""


def generate_service_account_keypair(private_key: Path, public_key: Path, bits: int = 2048) -> None:
    """Write an RSA private key (PKCS#8 PEM) and its public key (SPKI PEM)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OpenSSLNotFoundError("the openssl CLI is required to create the service-account key pair")
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", private_key],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [openssl, "pkey", "-in", private_key, "-pubout", "-out", public_key],
        check=True,
        capture_output=True,
    )
    private_key.chmod(0o600)


@dataclass(frozen=True)
class StaticToken:
    """One line of the apiserver's static token file."""

    token: str
    user: str
    uid: str
    groups: tuple[str, ...] = field(default_factory=tuple)


def new_token() -> str:
    """A random bearer token (128 bits, hex)."""
    return secrets.token_hex(16)


def write_token_file(path: Path, tokens: Sequence[StaticToken]) -> None:
    """Write ``token,user,uid[,"group1,group2"]`` lines as kube-apiserver expects.

    The file is read once at apiserver start, which is why extra users must be known up
    front (see ``ControlPlane(extra_users=...)``).
    """
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for entry in tokens:
            row = [entry.token, entry.user, entry.uid]
            if entry.groups:
                row.append(",".join(entry.groups))
            writer.writerow(row)
    path.chmod(0o600)


def kubeconfig_document(
    *, server: str, ca_data_b64: str, user: str, token: str, cluster: str = "tiktok-dev"
) -> Mapping[str, object]:
    """A single-context kubeconfig for a bearer-token user.

    The CA is embedded (``certificate-authority-data``) so the file stays valid when
    copied elsewhere, and TLS stays verified (no ``InsecureRequestWarning`` in clients).
    """
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca_data_b64}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
