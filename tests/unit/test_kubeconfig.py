"""Kubeconfig and in-cluster resolution (pure parts of tiktok_service.kubeconfig)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tiktok_service import kubeconfig
from tiktok_service.kube_rest import Credentials
from tiktok_service.kubeconfig import Access, ExecCredential, ExecPlugin, KubeconfigError

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def document(user: dict[str, Any], cluster: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "current-context": "main",
        "contexts": [
            {"name": "other", "context": {"cluster": "c2", "user": "u2"}},
            {"name": "main", "context": {"cluster": "c1", "user": "u1", "namespace": "x"}},
        ],
        "clusters": [
            {"name": "c1", "cluster": cluster or {"server": "https://10.0.0.1:6443/"}},
            {"name": "c2", "cluster": {"server": "https://other:443", "insecure-skip-tls-verify": True}},
        ],
        "users": [{"name": "u1", "user": user}, {"name": "u2", "user": {"token": "t2"}}],
        **top,
    }


def test_current_context_token_and_embedded_ca() -> None:
    cluster = {"server": "https://10.0.0.1:6443/", "certificate-authority-data": base64.b64encode(CA_PEM).decode()}
    access = kubeconfig.resolve(document({"token": "abc"}, cluster), Path("/cfg"))
    assert access == Access(server="https://10.0.0.1:6443", ca_pem=CA_PEM, token="abc")
    assert Credentials(access).authorization() == "Bearer abc"


def test_named_context_and_insecure_cluster() -> None:
    access = kubeconfig.resolve(document({"token": "abc"}), Path("/cfg"), context="other")
    assert (access.server, access.verify, access.token) == ("https://other:443", False, "t2")


def test_relative_paths_are_relative_to_the_kubeconfig_directory() -> None:
    user = {"client-certificate": "pki/user.crt", "client-key": "/abs/user.key", "tokenFile": "tok"}
    cluster = {"server": "https://h:1", "certificate-authority": "pki/ca.crt"}
    access = kubeconfig.resolve(document(user, cluster), Path("/etc/kube"))
    assert access.ca_path == "/etc/kube/pki/ca.crt"
    assert access.cert_path == "/etc/kube/pki/user.crt"
    assert access.key_path == "/abs/user.key"
    assert access.token_path == "/etc/kube/tok"


def test_basic_auth_and_auth_provider_token() -> None:
    basic = kubeconfig.resolve(document({"username": "ann", "password": "pw"}), Path("/"))
    assert Credentials(basic).authorization() == "Basic " + base64.b64encode(b"ann:pw").decode()
    oidc = kubeconfig.resolve(document({"auth-provider": {"name": "oidc", "config": {"id-token": "jwt"}}}), Path("/"))
    assert oidc.token == "jwt"


def test_exec_plugin_stanza() -> None:
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token"],
            "env": [{"name": "AWS_PROFILE", "value": "prod"}],
        }
    }
    access = kubeconfig.resolve(document(user), Path("/home/me/.kube"))
    assert access.exec_plugin == ExecPlugin(
        command="aws",
        args=("eks", "get-token"),
        env=(("AWS_PROFILE", "prod"),),
        api_version="client.authentication.k8s.io/v1beta1",
        cwd="/home/me/.kube",
    )


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"contexts": []}, "no current-context"),
        ({"current-context": "nope", "contexts": []}, "context 'nope' is not defined"),
        (document({}, {"certificate-authority": "x"}), "has no server"),
        (document({"client-key-data": "%%%"}), "client-key-data is not valid base64"),
        (document({"exec": {"args": ["x"]}}), "exec plugin has no command"),
    ],
)
def test_unusable_kubeconfigs_say_why(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(KubeconfigError, match=reason):
        kubeconfig.resolve(doc, Path("/"))


def test_from_file_reports_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        kubeconfig.from_file(tmp_path / "missing")
    (tmp_path / "list").write_text("- a\n- b\n")
    with pytest.raises(KubeconfigError, match="not a YAML mapping"):
        kubeconfig.from_file(tmp_path / "list")


def test_in_cluster_from_the_service_environment(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(CA_PEM)
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    access = kubeconfig.in_cluster(env, tmp_path)
    assert access == Access(
        server="https://[fd00::1]:443", ca_path=str(tmp_path / "ca.crt"), token_path=str(tmp_path / "token")
    )
    assert Credentials(access).authorization() == "Bearer sa-token"
    with pytest.raises(KubeconfigError, match="not in a cluster"):
        kubeconfig.in_cluster({}, tmp_path)
    (tmp_path / "token").unlink()
    with pytest.raises(KubeconfigError, match="token is missing"):
        kubeconfig.in_cluster(env, tmp_path)


def exec_output(status: dict[str, Any], api_version: str = "client.authentication.k8s.io/v1") -> str:
    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status})


def test_exec_credential_token_and_certificate() -> None:
    v1 = "client.authentication.k8s.io/v1"
    parsed = kubeconfig.parse_exec_credential(
        exec_output({"token": "tk", "expirationTimestamp": "2030-01-02T03:04:05Z"}), v1
    )
    assert parsed == ExecCredential(token="tk", expires_at=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    cert = kubeconfig.parse_exec_credential(exec_output({"clientCertificateData": "C", "clientKeyData": "K"}), v1)
    assert (cert.cert_pem, cert.key_pem, cert.expires_at) == (b"C", b"K", None)


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("not json", "not JSON"),
        (json.dumps({"apiVersion": "client.authentication.k8s.io/v1"}), "no status"),
        (exec_output({"token": "t"}, "client.authentication.k8s.io/v1beta1"), "answered"),
        (exec_output({"clientCertificateData": "C"}), "neither a token nor"),
    ],
)
def test_bad_exec_credentials_say_why(output: str, reason: str) -> None:
    with pytest.raises(KubeconfigError, match=reason):
        kubeconfig.parse_exec_credential(output, "client.authentication.k8s.io/v1")


def test_exec_token_is_renewed_only_when_it_expires() -> None:
    now = dt.datetime.now(dt.UTC)
    answers = iter(
        [
            ExecCredential(token="first", expires_at=now + dt.timedelta(seconds=10)),  # within the margin
            ExecCredential(token="second", expires_at=now + dt.timedelta(hours=1)),
        ]
    )
    calls: list[ExecPlugin] = []

    def run(plugin: ExecPlugin) -> ExecCredential:
        calls.append(plugin)
        return next(answers)

    plugin = ExecPlugin(command="get-token")
    credentials = Credentials(Access(server="https://h:1", exec_plugin=plugin), run_plugin=run)
    assert credentials.authorization() == "Bearer first"
    assert credentials.authorization() == "Bearer second"
    assert credentials.authorization() == "Bearer second"
    assert calls == [plugin, plugin]
