"""The configuration and CRD references are generated from the code, and the README names only real settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tiktok_service_dev import reference, schemas

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = re.compile(r"^### [^\n]*\(`([A-Z]+_)\*`\)\n(.*?)(?=^#{2,3} )", re.M | re.S)


def env_names(model: type[BaseSettings]) -> set[str]:
    return {env for name, info in model.model_fields.items() for env in reference.env_names(model, name, info)}


@pytest.mark.parametrize(("title", "model"), [(title, model) for title, _, model in reference.PROCESSES])
def test_every_setting_says_what_it_is_for(title: str, model: type[BaseSettings]) -> None:
    assert [name for name, info in model.model_fields.items() if not info.description] == [], title


def test_the_reference_files_are_current() -> None:
    crd_text = schemas.planned()[schemas.CRD]
    for path, text in reference.planned(crd_text).items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run `make schemas`"


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = reference.configuration_reference()
    for _, _, model in reference.PROCESSES:
        for env in env_names(model):
            assert f"`{env}`" in text


def test_every_variable_the_readme_names_exists() -> None:
    models = {model.model_config.get("env_prefix"): model for _, _, model in reference.PROCESSES}
    sections = SECTION.findall(README.read_text(encoding="utf-8"))
    assert {prefix for prefix, _ in sections} >= {"CONNECTOR_", "PERSISTER_"}
    unknown = []
    for prefix, body in sections:
        known = env_names(models[prefix])
        for row in re.findall(r"^\| ([^|]+) \|", body, re.M):
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row):
                if name not in known and f"{prefix}{name}" not in known:
                    unknown.append(f"{prefix}{name}")
    assert unknown == []


def test_the_crd_reference_lists_every_spec_field() -> None:
    crd_text = schemas.planned()[schemas.CRD]
    text = reference.planned(crd_text)[reference.CRD_REFERENCE]
    for field in ("username", "workspaceId", "connection.proxySecretRef.name", "restartPolicy.maxRestarts"):
        assert f"| `{field}` |" in text
