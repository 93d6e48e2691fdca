"""Prometheus rules: ``promtool`` checks the rules and the configuration and runs the
unit tests of deploy/prometheus/alerts_test.yml (firing and not-firing cases for
every alert). promtool comes with Debian's ``prometheus`` package; without it these
tests are skipped, except in CI (``CI=true``) where they fail."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.ops.deploy import DOCS_OPS, PROMETHEUS, load_documents, require_binary

ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run(
        [binary, *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _rules() -> list[dict[str, Any]]:
    (document,) = load_documents(ALERTS)
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alert_tests() -> list[dict[str, Any]]:
    (document,) = load_documents(ALERTS_TEST)
    return [case for test in document["tests"] for case in test["alert_rule_test"]]


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_configuration_is_valid() -> None:
    result = promtool("check", "config", CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", [r["alert"] for r in _rules()])
def test_every_alert_has_a_firing_and_a_not_firing_case(alert: str) -> None:
    cases = [case for case in _alert_tests() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"{alert}: no firing case"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert}: no not-firing case"


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: str(r["alert"]))
def test_every_alert_has_a_severity_and_a_runbook_section(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("page", "warning")
    for key in ("summary", "description", "runbook"):
        assert rule["annotations"].get(key), f"{rule['alert']}: annotation {key} missing"
    runbook = rule["annotations"]["runbook"]
    assert runbook.startswith("docs/ops.md#")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", DOCS_OPS.read_text(encoding="utf-8"), re.M)
    }
    assert runbook.split("#", 1)[1] in anchors, f"{runbook}: no such section in docs/ops.md"


def test_failsafe_alert_pages() -> None:
    (rule,) = [r for r in _rules() if "regulator_failsafe_total" in r["expr"]]
    assert rule["labels"]["severity"] == "page"
    assert rule["for"] == "5m"
