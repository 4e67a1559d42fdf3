"""The configuration and CRD references (`docs/configuration.md`, `docs/livestream-crd.md`), generated.

Both are read from the code they document — every process's settings class (variable,
default, meaning) and the Livestream CRD's OpenAPI schema (field, type, constraints,
meaning) — so they cannot drift: a generator writes them and a
test fails when the files, or the variables the README names, disagree with the code.
`tiktok-service-dev schemas` (`make schemas`) writes them with the event contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from tiktok_service import settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"
CRD_REFERENCE = REPO_ROOT / "docs" / "livestream-crd.md"

#: The processes and their settings classes, in the order the reference lists them.
PROCESSES: tuple[tuple[str, str, type[BaseSettings]], ...] = (
    ("Connector", "tiktok-service connector", settings.ConnectorSettings),
    ("Persister", "tiktok-service persister", settings.PersisterSettings),
    ("Operator", "tiktok-service operator", settings.OperatorSettings),
    ("API", "tiktok-service api", settings.ApiSettings),
    ("Access setup", "tiktok-service access", settings.AccessSettings),
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def env_names(model: type[BaseSettings], name: str, info: FieldInfo) -> list[str]:
    """Every environment variable that sets the field (its alias choices, or prefix + name)."""
    alias = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return [str(choice) for choice in choices]
    if isinstance(alias, str):
        return [alias]
    prefix = str(model.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper()]


def default_of(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    if default is None or default is PydanticUndefined:
        return "—"
    secret = getattr(default, "get_secret_value", None)
    if secret is not None:
        return "(secret)"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, (list, tuple, dict, set, frozenset)):
        return f"`{json.dumps(sorted(default) if isinstance(default, (set, frozenset)) else default, default=str)}`"
    return f"`{default}`"


def constraints_of(info: FieldInfo) -> str:
    found = []
    for item in info.metadata:
        for key, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, key, None)
            if value is not None:
                found.append(f"{symbol} {value}")
    return ", ".join(found)


def settings_table(model: type[BaseSettings]) -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        meaning = info.description or ""
        bounds = constraints_of(info)
        if bounds:
            meaning = f"{meaning} ({bounds})" if meaning else f"({bounds})"
        names = ", ".join(f"`{env}`" for env in env_names(model, name, info))
        lines.append(f"| {names} | {default_of(info)} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def configuration_reference() -> str:
    parts = [
        "# Configuration reference\n\n",
        "Generated from `tiktok_service/settings.py` by `make schemas`; do not edit. Every process\n",
        "reads its environment once; flags (`--kebab-case`, see `<command> --help`) override it.\n",
    ]
    for title, command, model in PROCESSES:
        parts.append(f"\n## {title} (`{command}`)\n\n")
        doc = (model.__doc__ or "").strip().splitlines()
        if doc:
            parts.append(f"{doc[0]}\n\n")
        parts.append(settings_table(model))
    return "".join(parts)


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "")
    if kind == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    if schema.get("x-kubernetes-preserve-unknown-fields") and not kind:
        return "any"
    return str(kind) or "any"


def _rules_of(schema: dict[str, Any]) -> str:
    rules = []
    for key, label in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("maxItems", "max items"),
        ("pattern", "pattern"),
        ("format", "format"),
        ("default", "default"),
    ):
        if key in schema:
            value = schema[key]
            rules.append(f"{label} `{json.dumps(value) if not isinstance(value, str) else value}`")
    if "enum" in schema:
        values = schema["enum"]
        shown = ", ".join(f"`{v}`" for v in values[:8]) + (f", … ({len(values)} values)" if len(values) > 8 else "")
        rules.append(f"one of {shown}")
    for rule in schema.get("x-kubernetes-validations", []):
        rules.append(f"rule `{rule['rule']}`" + (f": {rule['message']}" if "message" in rule else ""))
    return "; ".join(rules)


def _walk(schema: dict[str, Any], path: str, required: bool, rows: list[str]) -> None:
    if path:
        rows.append(
            f"| `{path}` | {_type_of(schema)} | {'yes' if required else ''} | "
            f"{_cell(schema.get('description', ''))} | {_cell(_rules_of(schema))} |"
        )
    children = schema.get("properties", {})
    if not children and schema.get("type") == "array":
        children = schema.get("items", {}).get("properties", {})
        needed = set(schema.get("items", {}).get("required", []))
        prefix = f"{path}[]"
    else:
        needed = set(schema.get("required", []))
        prefix = path
    for name, child in children.items():
        _walk(child, f"{prefix}.{name}" if prefix else name, name in needed, rows)


def crd_reference(crd: dict[str, Any]) -> str:
    names = crd["spec"]["names"]
    parts = [
        f"# {names['kind']} reference (`{crd['spec']['group']}`)\n\n",
        "Generated from `tiktok_service/crds/livestream.yaml` by `make schemas`; do not edit.\n",
    ]
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        for section in ("spec", "status"):
            rows = ["| field | type | required | meaning | validation |", "|---|---|---|---|---|"]
            _walk(schema["properties"][section], "", False, rows)
            parts.append(f"\n## `{version['name']}` {section}\n\n")
            parts.append("\n".join(rows) + "\n")
    return "".join(parts)


def planned(crd_text: str) -> dict[Path, str]:
    """The two reference files, from the settings and the CRD's (planned) text."""
    return {CONFIGURATION: configuration_reference(), CRD_REFERENCE: crd_reference(yaml.safe_load(crd_text))}
