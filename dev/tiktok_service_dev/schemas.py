"""Regenerate the event contract: schemas, AsyncAPI document, README table, CRD type list.

Usage: `tiktok-service-dev schemas [--check]` (or `make schemas`) in a checkout: it writes into
the product package, the CRD and the README. With `--check` nothing is written and the exit
code says whether anything is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tiktok_service import crds, schemas
from tiktok_service.connector import asyncapi, contract
from tiktok_service_dev import reference

PACKAGE_DIR = Path(schemas.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
README = REPO_ROOT / "README.md"
CRD = Path(crds.__file__).resolve().parent / "livestream.yaml"
ASYNCAPI = REPO_ROOT / asyncapi.DOCUMENT_PATH


def readme_with_table(text: str) -> str:
    start = text.index(contract.README_BEGIN)
    end = text.index(contract.README_END) + len(contract.README_END)
    return text[:start] + contract.readme_table() + text[end:]


def crd_with_types(text: str) -> str:
    """Rewrite the `enum:` list under `eventTypes` (keeping its indentation)."""
    lines = text.splitlines(keepends=True)
    anchor = next(i for i, line in enumerate(lines) if line.strip() == "eventTypes:")
    enum_at = next(i for i in range(anchor, len(lines)) if lines[i].strip() == "enum:")
    indent = lines[enum_at + 1][: len(lines[enum_at + 1]) - len(lines[enum_at + 1].lstrip())]
    end = enum_at + 1
    while end < len(lines) and lines[end].startswith(indent + "- "):
        end += 1
    items = [f"{indent}- {value}\n" for value in contract.crd_type_enum()]
    return "".join(lines[: enum_at + 1] + items + lines[end:])


def planned() -> dict[Path, str]:
    """Every generated file and the content it should have."""
    files = {PACKAGE_DIR / name: content for name, content in contract.all_schema_files().items()}
    files[README] = readme_with_table(README.read_text(encoding="utf-8"))
    files[CRD] = crd_with_types(CRD.read_text(encoding="utf-8"))
    files[ASYNCAPI] = asyncapi.render()
    files.update(reference.planned(files[CRD]))
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = [path for path, content in planned().items() if not path.exists() or path.read_text("utf-8") != content]
    expected = set(contract.all_schema_files())
    extra = [p for p in PACKAGE_DIR.glob("*.schema.json") if p.name not in expected]
    if check:
        for path in [*stale, *extra]:
            print(f"stale: {path.relative_to(REPO_ROOT)}")
        return 1 if stale or extra else 0
    for path in extra:
        path.unlink()
    for path, content in planned().items():
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
