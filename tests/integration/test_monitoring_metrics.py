"""Every vLLM metric the dashboards and the alert rules query exists in a real vLLM's /metrics.

A metric vLLM renames or drops (vllm:gpu_cache_usage_perc became vllm:kv_cache_usage_perc) fails
here, not on an operator's empty panel. Histograms and counters are queried by their series names
(`_bucket`, `_sum`, `_count`, `_total`), which the scrape lists as they are.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "roles/monitoring/files"
METRIC = re.compile(r"\bvllm:[A-Za-z0-9_:]+")


def dashboard_queries() -> dict[str, list[str]]:
    return {
        path.name: [
            t["expr"] for panel in json.loads(path.read_text())["panels"] for t in panel.get("targets", [])
        ]
        for path in sorted((MONITORING / "dashboards").glob("*.json"))
    }


def rule_queries() -> dict[str, list[str]]:
    return {
        path.name: [
            rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
        ]
        for path in sorted((MONITORING / "rules").glob("*.yml"))
    }


def used_metrics() -> dict[str, set[str]]:
    """{vllm metric name: the files whose queries use it}."""
    used: dict[str, set[str]] = {}
    for source, exprs in (dashboard_queries() | rule_queries()).items():
        for expr in exprs:
            for name in METRIC.findall(expr):
                used.setdefault(name, set()).add(source)
    return used


def scraped_series(text: str) -> set[str]:
    """Series names of a Prometheus text exposition (comments and labels left out)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_the_queries_name_vllm_metrics():
    used = used_metrics()
    assert {
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
    } <= set(used)


def test_a_renamed_metric_is_found_missing():
    scraped = scraped_series('vllm:kv_cache_usage_perc{engine="0"} 0.0\n# HELP x\n')
    assert "vllm:gpu_cache_usage_perc" not in scraped
    assert "vllm:kv_cache_usage_perc" in scraped


@pytest.mark.vllm_server("reference")
def test_every_vllm_metric_queried_is_in_a_real_scrape(vllm_server):
    with urllib.request.urlopen(f"{vllm_server.url}/metrics", timeout=30) as response:
        scraped = scraped_series(response.read().decode())
    missing = {name: sorted(sources) for name, sources in used_metrics().items() if name not in scraped}
    assert missing == {}, f"metrics queried but not exported by this vLLM: {missing}"
