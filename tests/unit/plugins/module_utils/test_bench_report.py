"""bench_report: results of `vllm bench serve` to series, plots, the data beside them and a summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from matplotlib import image

from ansible_collections.llmfleet.serve.plugins.module_utils import bench_report as br
from ansible_collections.llmfleet.serve.plugins.modules import bench_report as module

HOSTS = ("gpu-01", "gpu-02")
LEVELS = (1, 2, 4)


def result(host: str, level: int, scale: float = 1.0) -> dict:
    """A result as `vllm bench serve --save-result --metadata llmfleet_host=... ` writes it (the keys used)."""
    base = 10.0 * scale * (HOSTS.index(host) + 1)
    return {
        "max_concurrency": level,
        "llmfleet_host": host,
        "llmfleet_release": "r1",
        "completed": 8,
        "failed": 0,
        "request_throughput": 2.0 * level,
        "output_throughput": 100.0 * level / scale,
        "mean_ttft_ms": base * level,
        "p99_ttft_ms": base * level * 2,
        "mean_itl_ms": base / 10 + level,
        "p99_itl_ms": base / 5 + level,
    }


def write_run(directory: Path, scale: float = 1.0) -> Path:
    (directory / "results").mkdir(parents=True)
    for host in HOSTS:
        for level in LEVELS:
            (directory / "results" / f"{host}-c{level}.json").write_text(
                json.dumps(result(host, level, scale))
            )
    return directory


def test_series_has_one_line_per_host_and_one_point_per_level_equal_to_the_results(tmp_path):
    points = br.load_run(write_run(tmp_path / "run"))
    data = br.series(points, "mean_ttft_ms")
    assert data == {
        host: [[level, result(host, level)["mean_ttft_ms"]] for level in LEVELS] for host in HOSTS
    }


def test_a_comparison_names_each_line_by_run_and_host(tmp_path):
    points = br.load_run(write_run(tmp_path / "before", 2.0)) + br.load_run(write_run(tmp_path / "after"))
    data = br.series(points, "output_throughput", with_run=True)
    assert sorted(data) == ["after gpu-01", "after gpu-02", "before gpu-01", "before gpu-02"]
    assert data["before gpu-02"] == [
        [level, result("gpu-02", level, 2.0)["output_throughput"]] for level in LEVELS
    ]


def test_runs_of_the_same_name_are_not_compared(tmp_path):
    with pytest.raises(br.BenchReportError, match="different names, not both run"):
        br.write_report(write_run(tmp_path / "a" / "run"), write_run(tmp_path / "b" / "run"))


def test_two_results_for_one_level_are_refused(tmp_path):
    point = br.point_from_result(result("gpu-01", 1), "run")
    with pytest.raises(br.BenchReportError, match="two results for concurrency 1"):
        br.series([point, point], "mean_ttft_ms")


def test_a_result_without_the_host_is_refused_with_its_file(tmp_path):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "results" / "x.json").write_text(json.dumps({"max_concurrency": 1}))
    with pytest.raises(br.BenchReportError, match=r"x.json: no llmfleet_host"):
        br.load_run(run)


def test_an_empty_run_is_refused(tmp_path):
    with pytest.raises(br.BenchReportError, match="no bench results"):
        br.load_run(tmp_path)


@pytest.mark.parametrize("compare", [False, True], ids=["one run", "compared"])
def test_report_writes_decodable_pngs_and_the_data_they_draw(tmp_path, compare):
    before = write_run(tmp_path / "before", 2.0) if compare else None
    out = write_run(tmp_path / "after")
    report = br.write_report(out, before, title="t")
    runs = {"after": 1.0, "before": 2.0} if compare else {"after": 1.0}
    for stem, key, _ in br.METRICS:
        pixels = image.imread(out / f"{stem}.png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        expected = {
            (f"{run} {host}" if compare else host): [
                [level, result(host, level, scale)[key]] for level in LEVELS
            ]
            for run, scale in runs.items()
            for host in HOSTS
        }
        assert json.loads((out / f"{stem}.json").read_text()) == {"metric": key, "series": expected}
        with (out / f"{stem}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == len(expected) * len(LEVELS)
        assert {(r["series"], int(r["concurrency"]), float(r[key])) for r in rows} == {
            (label, level, value) for label, points in expected.items() for level, value in points
        }
    summary = (out / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(runs) * len(HOSTS) * len(LEVELS)
    assert report["series"] == sorted(expected)


def test_the_module_documents_its_options_and_reports_bad_input(tmp_path, run_module, documented_spec):
    documented_spec(module)
    result = run_module(module, {"run": str(tmp_path)})
    assert result["failed"]
    assert f"cannot report the bench run {tmp_path}: no bench results" in result["msg"]


def test_the_module_writes_the_report(tmp_path, run_module):
    result = run_module(module, {"run": str(write_run(tmp_path / "run"))})
    assert result["changed"]
    assert result["series"] == list(HOSTS)
    assert all(Path(path).is_file() for path in result["files"])
