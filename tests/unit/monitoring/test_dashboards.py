"""The Grafana dashboards shipped in roles/monitoring/files/dashboards: valid JSON whose every query
promtool parses (as a recording rule, with Grafana's variables filled in)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from .test_alert_rules import PROMTOOL, REPO

DASHBOARDS = sorted((REPO / "roles/monitoring/files/dashboards").glob("*.json"))
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$host": ".*"}


def queries(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_there_are_dashboards():
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_query_and_ids_are_unique(path):
    dashboard = json.loads(path.read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel.get("targets") for panel in panels)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert dashboard["uid"] and dashboard["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_promtool_parses_every_query(tmp_path, path):
    exprs = queries(json.loads(path.read_text()))
    for name, value in GRAFANA_VARIABLES.items():
        exprs = [expr.replace(name, value) for expr in exprs]
    assert not [expr for expr in exprs if "$" in expr], "a Grafana variable this test does not fill in"
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    rule_file = tmp_path / "dashboard.rules.yml"
    rule_file.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
