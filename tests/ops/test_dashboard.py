"""The Grafana dashboard and the alert rules use only metrics the service exports
(``regulator.metrics.Metrics``), under the names Prometheus sees: counters with
``_total``, histograms as ``_bucket``/``_sum``/``_count``, gauges as is."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from regulator.metrics import Metrics
from tests.ops.deploy import GRAFANA, PROMETHEUS, load_documents, require_binary

DASHBOARD = GRAFANA / "regulator-dashboard.json"
METRIC_TOKEN = re.compile(r"\bregulator_[a-z_]+")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
}


def exported_names() -> dict[str, str]:
    """Every series name Prometheus scrapes from the service → its metric family."""
    names: dict[str, str] = {}
    for family in Metrics().registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
        for sample in family.samples:
            names.setdefault(sample.name, family.name)
    return names


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    dashboard = _dashboard()
    expressions = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            expressions.append(query)
    return expressions


def alert_expressions() -> list[str]:
    (document,) = load_documents(PROMETHEUS / "alerts.yml")
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def _unknown(expressions: list[str]) -> set[str]:
    names = exported_names()
    return {token for expr in expressions for token in METRIC_TOKEN.findall(expr)} - set(names)


def test_service_exports_the_design_metrics() -> None:
    names = exported_names()
    for name in [
        "regulator_calls_total",
        "regulator_decision_seconds_bucket",
        "regulator_webhook_seconds_bucket",
        "regulator_failsafe_total",
        "regulator_referrals_total",
        "regulator_outbox_pending",
        "regulator_outbox_deliveries_total",
        "regulator_storage_errors_total",
        "regulator_spool_pending",
        "regulator_protocol_reloads_total",
        "regulator_mmg_open",
        "regulator_answer_delay_seconds_bucket",
        "regulator_legs_offered_total",
        "regulator_legs_abandoned_total",
    ]:
        assert name in names


def test_dashboard_uses_only_exported_metric_names() -> None:
    assert dashboard_expressions()
    assert _unknown(dashboard_expressions()) == set()


def test_alert_rules_use_only_exported_metric_names() -> None:
    assert _unknown(alert_expressions()) == set()


def test_dashboard_covers_every_metric_family() -> None:
    names = exported_names()
    used = {
        names[token]
        for expr in dashboard_expressions()
        for token in METRIC_TOKEN.findall(expr)
        if token in names
    }
    families = {family.name for family in Metrics().registry.collect()}
    assert used == families


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Calls by route", "regulator_calls_total"),
        ("Calls by MMG", "regulator_calls_total"),
        ("Fail-safes by reason", "regulator_failsafe_total"),
        ("Webhook latency p50 / p99", "regulator_webhook_seconds_bucket"),
        ("Decision latency p50 / p99", "regulator_decision_seconds_bucket"),
        ("Outbox pending", "regulator_outbox_pending"),
        ("Outbox deliveries", "regulator_outbox_deliveries_total"),
        ("Spool pending", "regulator_spool_pending"),
        ("Store errors", "regulator_storage_errors_total"),
        ("MMG open", "regulator_mmg_open"),
        ("Referrals by event", "regulator_referrals_total"),
        ("QS60 by MMG and line", "regulator_answer_delay_seconds_bucket"),
        ("Answer rate by MMG and line", "regulator_legs_offered_total"),
        ("Legs offered and abandoned per hour", "regulator_legs_abandoned_total"),
    ],
)
def test_dashboard_has_the_panel(title: str, metric: str) -> None:
    panels = {p["title"]: p for p in _panels(_dashboard()["panels"])}
    assert title in panels
    assert any(metric in target["expr"] for target in panels[title]["targets"])


def test_dashboard_panels_have_unique_ids_and_a_datasource() -> None:
    panels = list(_panels(_dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_is_provisioned_from_the_compose_mount() -> None:
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "regulator.yml").read_text(encoding="utf-8")
    )["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert _dashboard()["uid"] == "regulator-overview"


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: wrap each panel query in a recording rule,
    # with Grafana's variables replaced by values Prometheus accepts.
    binary = require_binary("promtool", "prometheus")
    rules = []
    for index, expr in enumerate(dashboard_expressions()):
        if expr.startswith("label_values("):
            continue
        concrete = (
            expr.replace("$__rate_interval", "5m").replace("$__range", "6h").replace("$mmg", ".*")
        )
        rules.append({"record": f"dashboard:expr_{index}", "expr": concrete})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [binary, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
