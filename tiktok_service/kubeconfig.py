"""Where the API server is and who we are: a kubeconfig's current context, or the pod's service account.

Read here with PyYAML rather than with the `kubernetes` package (126 MB installed, more than
everything else the image adds) for the few fields a client needs. Supported, as kubectl
reads them: `server`, `certificate-authority[-data]`, `insecure-skip-tls-verify`,
`client-certificate[-data]`/`client-key[-data]`, `token`/`tokenFile`, `username`/`password`,
an `auth-provider`'s stored `id-token`/`access-token`, and `exec` credential plugins
(client.authentication.k8s.io, token or client certificate, refreshed when they expire).
Relative file paths are relative to the kubeconfig's directory. Certificates given as data stay
in memory (nothing is written: the image's root filesystem is read-only).

`resolve` and `parse_exec_credential` are pure; `from_file`, `in_cluster` and `run_exec_plugin`
do the reading and the process call.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(Exception):
    """The kubeconfig (or the in-cluster environment) does not say how to reach the API server."""


@dataclass(frozen=True)
class ExecPlugin:
    """A `users[].user.exec` stanza: a command printing an ExecCredential."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = "client.authentication.k8s.io/v1"
    cwd: str | None = None


@dataclass(frozen=True)
class ExecCredential:
    """What an exec plugin answered: a token or a client certificate, until `expires_at`."""

    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class Access:
    """Everything a client needs; paths are absolute, `*_pem` are in-memory PEM data."""

    server: str
    verify: bool = True
    ca_path: str | None = None
    ca_pem: bytes | None = None
    cert_path: str | None = None
    cert_pem: bytes | None = None
    key_path: str | None = None
    key_pem: bytes | None = None
    token: str | None = None
    token_path: str | None = None
    basic: tuple[str, str] | None = None
    exec_plugin: ExecPlugin | None = field(default=None)


def _named(document: Mapping[str, Any], section: str, name: str) -> Mapping[str, Any]:
    singular = section.rstrip("s")
    for item in document.get(section) or ():
        if isinstance(item, Mapping) and item.get("name") == name:
            value = item.get(singular)
            return value if isinstance(value, Mapping) else {}
    raise KubeconfigError(f"{singular} {name!r} is not defined in the kubeconfig's {section}")


def _path(base_dir: Path, value: object) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _pem(value: object, key: str) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError as exc:
        raise KubeconfigError(f"{key} is not valid base64: {exc}") from None


def _exec_plugin(stanza: Mapping[str, Any], base_dir: Path) -> ExecPlugin:
    command = stanza.get("command")
    if not command:
        raise KubeconfigError("exec: the user's exec plugin has no command")
    env = tuple((str(item["name"]), str(item["value"])) for item in stanza.get("env") or ())
    return ExecPlugin(
        command=str(command),
        args=tuple(str(arg) for arg in stanza.get("args") or ()),
        env=env,
        api_version=str(stanza.get("apiVersion") or "client.authentication.k8s.io/v1"),
        cwd=str(base_dir),
    )


def resolve(document: Mapping[str, Any], base_dir: Path, *, context: str | None = None) -> Access:
    """The access a kubeconfig's current (or the named) context gives; relative paths against `base_dir`."""
    name = context or document.get("current-context")
    if not name:
        raise KubeconfigError("the kubeconfig has no current-context")
    ctx = _named(document, "contexts", str(name))
    cluster = _named(document, "clusters", str(ctx.get("cluster", "")))
    user = _named(document, "users", str(ctx["user"])) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server")
    provider = (user.get("auth-provider") or {}).get("config") or {}
    username, password = user.get("username"), user.get("password")
    return Access(
        server=str(server).rstrip("/"),
        verify=not cluster.get("insecure-skip-tls-verify", False),
        ca_path=_path(base_dir, cluster.get("certificate-authority")),
        ca_pem=_pem(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        cert_path=_path(base_dir, user.get("client-certificate")),
        cert_pem=_pem(user.get("client-certificate-data"), "client-certificate-data"),
        key_path=_path(base_dir, user.get("client-key")),
        key_pem=_pem(user.get("client-key-data"), "client-key-data"),
        token=user.get("token") or provider.get("id-token") or provider.get("access-token") or None,
        token_path=_path(base_dir, user.get("tokenFile")),
        basic=(str(username), str(password)) if username and password else None,
        exec_plugin=_exec_plugin(user["exec"], base_dir) if user.get("exec") else None,
    )


def from_file(path: Path, *, context: str | None = None) -> Access:
    """Read `path` and resolve its current context (or `context`)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}") from None
    if not isinstance(document, Mapping):
        raise KubeconfigError(f"kubeconfig {path} is not a YAML mapping")
    return resolve(document, path.expanduser().absolute().parent, context=context)


def in_cluster(env: Mapping[str, str] | None = None, account_dir: Path = SERVICE_ACCOUNT_DIR) -> Access:
    """The pod's service account: the API server from the service environment, token re-read as it rotates."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError(
            "not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set (give a kubeconfig outside a pod)"
        )
    token_path, ca_path = account_dir / "token", account_dir / "ca.crt"
    for needed in (token_path, ca_path):
        if not needed.is_file():
            raise KubeconfigError(f"in-cluster service account file {needed} is missing")
    host = f"[{host}]" if ":" in host else host
    return Access(server=f"https://{host}:{port}", ca_path=str(ca_path), token_path=str(token_path))


def parse_exec_credential(output: str | bytes, api_version: str) -> ExecCredential:
    """An exec plugin's stdout (an ExecCredential object) as a token or client certificate."""
    try:
        data = json.loads(output)
    except ValueError as exc:
        raise KubeconfigError(f"exec: the plugin's output is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("status"), dict):
        raise KubeconfigError("exec: the plugin's output has no status")
    if data.get("apiVersion") != api_version:
        raise KubeconfigError(f"exec: the plugin answered {data.get('apiVersion')!r}, not {api_version!r}")
    status: dict[str, Any] = data["status"]
    expires = status.get("expirationTimestamp")
    expires_at = dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00")) if expires else None
    if status.get("token"):
        return ExecCredential(token=str(status["token"]), expires_at=expires_at)
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        return ExecCredential(
            cert_pem=str(status["clientCertificateData"]).encode(),
            key_pem=str(status["clientKeyData"]).encode(),
            expires_at=expires_at,
        )
    raise KubeconfigError("exec: the plugin's status has neither a token nor a client certificate and key")


def run_exec_plugin(plugin: ExecPlugin, *, timeout_s: float = 60.0) -> ExecCredential:
    """Run the plugin (non-interactively, as in a pod) and parse what it prints."""
    info = {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
    argv: Sequence[str] = [plugin.command, *plugin.args]
    try:
        done = subprocess.run(  # the kubeconfig's own plugin, run as kubectl runs it
            argv, cwd=plugin.cwd, env=env, capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeconfigError(f"exec: cannot run {plugin.command}: {exc}") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()[-500:]
        raise KubeconfigError(f"exec: {plugin.command} exited with {done.returncode}: {stderr}")
    return parse_exec_credential(done.stdout, plugin.api_version)
