"""The alert rules shipped in roles/monitoring/files/rules, checked and unit-tested by promtool.

promtool comes from Debian's prometheus package (scripts/bootstrap.sh links it at .cache/bin/promtool;
LLMFLEET_PROMTOOL names another one).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "roles/monitoring/files/rules"
RULE_FILE = RULES / "llmfleet.rules.yml"
TEST_FILE = RULES / "tests/llmfleet.rules.test.yml"
PROMTOOL = Path(os.environ.get("LLMFLEET_PROMTOOL", REPO / ".cache/bin/promtool"))


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess:
    assert PROMTOOL.exists(), f"no promtool at {PROMTOOL}: run make bootstrap (or set LLMFLEET_PROMTOOL)"
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, check=False)


def alerts() -> list[str]:
    groups = yaml.safe_load(RULE_FILE.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules():
    done = promtool("check", "rules", str(RULE_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_the_rule_unit_tests_pass():
    done = promtool("test", "rules", str(TEST_FILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not():
    cases = [
        case for test in yaml.safe_load(TEST_FILE.read_text())["tests"] for case in test["alert_rule_test"]
    ]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert set(alerts()) - fired == set(), "alerts no test fires"
    assert set(alerts()) - quiet == set(), "alerts without a test where they stay quiet"
    assert (fired | quiet) - set(alerts()) == set(), "tests of alerts that do not exist"


def test_the_expressions_are_the_documented_ones():
    rules = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(RULE_FILE.read_text())["groups"]
        for rule in group["rules"]
    }
    assert rules["LLMFleetEngineDown"] == 'up{job="vllm"} == 0'
    assert rules["LLMFleetTargetMissing"] == 'absent(up{job="vllm"})'
    assert "rate(vllm:time_to_first_token_seconds_bucket[5m])" in rules["LLMFleetTimeToFirstTokenHigh"]


@pytest.mark.parametrize(
    ("broken", "refusal"),
    [
        ('expr: up{job="vllm" == 0', "parse error"),
        ("expr: rate(vllm:num_requests_waiting) > 1", "parse error"),
    ],
    ids=["unclosed selector", "range function without a range"],
)
def test_promtool_refuses_a_broken_rule_file(tmp_path, broken, refusal):
    text = RULE_FILE.read_text().replace('expr: up{job="vllm"} == 0', broken, 1)
    assert text != RULE_FILE.read_text()
    path = tmp_path / "broken.rules.yml"
    path.write_text(text)
    done = promtool("check", "rules", str(path))
    assert done.returncode != 0
    assert refusal in done.stdout + done.stderr


def test_a_test_that_expects_the_wrong_alert_fails(tmp_path):
    tests = yaml.safe_load(TEST_FILE.read_text())
    tests["rule_files"] = [str(RULE_FILE)]
    quiet = next(test for test in tests["tests"] if not test["alert_rule_test"][0]["exp_alerts"])
    quiet["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "critical"}}]
    tests["tests"] = [quiet]
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(path))
    assert done.returncode != 0, done.stdout
    assert "FAILED" in done.stdout + done.stderr
