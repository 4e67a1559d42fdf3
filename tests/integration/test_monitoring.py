"""The alerting rules and the dashboard in `deploy/monitoring` are valid and name only metrics we export.

`promtool` (Debian's Prometheus package, installed by `make deps`) checks the rules, and the
dashboard's expressions as recording rules; every `tiktok_*` metric they name must appear on
the `/metrics` endpoint of a component, scraped over HTTP from the same health server and
registries the components serve.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tiktok_service.api.metrics import ApiMetrics
from tiktok_service.connector import metrics as connector_metrics
from tiktok_service.health_server import HealthServer
from tiktok_service.operator.metrics import OperatorMetrics
from tiktok_service.persister.metrics import PersisterMetrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
METRIC_NAME = re.compile(r"\btiktok_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: run `make deps`")


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]["groups"]
    return groups


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def promtool_check(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def exposed_names(registry: CollectorRegistry) -> Iterator[str]:
    """Every sample name a scrape of `registry` can show, read from a real HTTP scrape."""
    server = HealthServer(host="127.0.0.1", port=free_port(), probe=lambda: (True, {}), registry=registry)
    asyncio.run(server.start())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        asyncio.run(server.stop())
    for family in text_string_to_metric_families(text):
        yield family.name
        for suffix in SUFFIXES.get(family.type, ()):
            yield family.name + suffix


@pytest.fixture(scope="module")
def exported() -> set[str]:
    assert connector_metrics.EVENTS_PUBLISHED is not None  # the connector registers on the global registry
    registries = [REGISTRY]
    for make in (ApiMetrics, OperatorMetrics, PersisterMetrics.create):
        registry = CollectorRegistry()
        make(registry)
        registries.append(registry)
    return {name for registry in registries for name in exposed_names(registry)}


def test_promtool_accepts_the_alerting_rules(tmp_path: Path) -> None:
    done = promtool_check(rule_groups(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = rule_groups()
    broken[0]["rules"][0]["expr"] = "sum by (phase (tiktok_operator_livestreams)"
    assert promtool_check(broken, tmp_path).returncode != 0


def test_the_dashboards_expressions_parse(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_expressions())
    ]
    done = promtool_check([{"name": "dashboard", "rules": rules}], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_the_rules_and_the_dashboard_name_is_exported(exported: set[str]) -> None:
    expressions = [rule["expr"] for group in rule_groups() for rule in group["rules"]] + dashboard_expressions()
    named = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert len(named) > 10
    assert sorted(named - exported) == []


def test_the_scrape_sees_what_the_components_export(exported: set[str]) -> None:
    # The comparison above is only as good as this list: one metric of each component.
    assert {
        "tiktok_connector_events_published_total",
        "tiktok_persister_rows_inserted_total",
        "tiktok_operator_livestreams",
        "tiktok_api_requests_total",
    } <= exported
