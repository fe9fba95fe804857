"""The monitoring files in config/: Prometheus's scrape config and alert rules (checked and
unit-tested by promtool), the Grafana dashboard's shape, and the handler's metrics as
TorchServe must be told of them. The integration test runs all of it against real servers."""

from __future__ import annotations

import json
import re

import yaml

from handler.metrics import DECLARED
from petseg.serving.launcher import ROOT
from tests.support.prometheus import CONFIG_DIR, promtool

DASHBOARD = ROOT / "config" / "grafana" / "petseg-dashboard.json"
METRICS_YAML = ROOT / "config" / "metrics.yaml"


def passes(*args: str) -> None:
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_config_and_the_rules_pass_promtool_check():
    passes("check", "config", "prometheus.yml")
    passes("check", "rules", "alerts.yml")


def test_the_rules_unit_tests_pass():
    passes("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_runbook_and_a_case_where_it_fires_and_one_where_it_does_not():
    rules = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"] if "alert" in r]
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load((CONFIG_DIR / "alerts_test.yml").read_text())["tests"]:
        for case in test["promql_expr_test"]:
            name = re.fullmatch(r'ALERTS\{alertname="(\w+)"\}', case["expr"]).group(1)
            fired = any('alertstate="firing"' in s["labels"] for s in case["exp_samples"])
            cases.setdefault(name, set()).add(fired)
    for alert in alerts:
        annotations = alert["annotations"]
        assert annotations["summary"] and len(annotations["runbook"]) > 80, alert["alert"]
        assert alert["labels"]["severity"] in ("page", "ticket"), alert["alert"]
        assert cases.get(alert["alert"]) == {True, False}, alert["alert"]


def test_the_dashboard_is_importable_into_grafana():
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["description"]
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["version"]["allValue"] == ".*"


def test_torchserve_is_told_of_every_handler_metric_as_the_handler_emits_it():
    """TorchServe drops a handler metric it was not told of, or one whose dimensions differ."""
    sections = yaml.safe_load(METRICS_YAML.read_text())["model_metrics"]
    declared = {
        m["name"]: (kind, m["unit"], tuple(m["dimensions"]))
        for kind, metrics in sections.items()
        for m in metrics
    }
    for name, (kind, unit, dimensions) in DECLARED.items():
        assert declared.get(name) == (kind.value, unit, dimensions), name
