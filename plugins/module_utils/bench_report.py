"""From `vllm bench serve` results to plots, the data beside them and a Markdown summary.

A result is one JSON file that `vllm bench serve --save-result` wrote for one host and one
concurrency level; playbooks/bench.yml adds `llmfleet_host` and `llmfleet_release` to it
(`--metadata`). A run is a directory whose results/ holds them; the report is written beside. Each plot draws one line per series (a host, or
with a comparison a run and a host), one point per concurrency level; the numbers it draws are
written beside it as CSV and JSON, so a test or a person can check the plot against the results.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What is drawn: file stem, result key, axis label.
METRICS = (
    ("ttft", "mean_ttft_ms", "mean time to first token (ms)"),
    ("itl", "mean_itl_ms", "mean inter-token latency (ms)"),
    ("throughput", "output_throughput", "output throughput (tokens/s)"),
)
SUMMARY_KEYS = (
    "completed",
    "failed",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "p99_ttft_ms",
    "mean_itl_ms",
    "p99_itl_ms",
)


class BenchReportError(Exception):
    pass


@dataclass(frozen=True)
class BenchPoint:
    run: str
    host: str
    release: str
    concurrency: int
    result: dict

    def label(self, with_run: bool) -> str:
        return f"{self.run} {self.host}" if with_run else self.host


def load_run(directory: Path) -> list[BenchPoint]:
    """Every result JSON in a run's results/, as points named after the run (the directory's name)."""
    files = sorted((Path(directory) / "results").glob("*.json"))
    if not files:
        raise BenchReportError(f"no bench results (results/*.json) in {directory}")
    return [point_from_result(json.loads(path.read_text()), Path(directory).name, path) for path in files]


def point_from_result(result: dict, run: str, source: Path | str = "result") -> BenchPoint:
    missing = [key for key in ("max_concurrency", "llmfleet_host") if result.get(key) is None]
    if missing:
        raise BenchReportError(
            f"{source}: no {', '.join(missing)} in the result; was it written by bench.yml?"
        )
    return BenchPoint(
        run=run,
        host=str(result["llmfleet_host"]),
        release=str(result.get("llmfleet_release", "")),
        concurrency=int(result["max_concurrency"]),
        result=result,
    )


def series(points: Iterable[BenchPoint], key: str, with_run: bool = False) -> dict[str, list[list[float]]]:
    """{series label: [[concurrency, value], ...]} sorted by concurrency; one point per level."""
    out: dict[str, dict[int, float]] = {}
    for point in points:
        label = point.label(with_run)
        levels = out.setdefault(label, {})
        if point.concurrency in levels:
            raise BenchReportError(f"{label}: two results for concurrency {point.concurrency}")
        levels[point.concurrency] = float(point.result[key])
    return {
        label: [[level, levels[level]] for level in sorted(levels)] for label, levels in sorted(out.items())
    }


def write_data(path_stem: Path, key: str, data: dict[str, list[list[float]]]) -> None:
    path_stem.with_suffix(".json").write_text(json.dumps({"metric": key, "series": data}, indent=2) + "\n")
    with path_stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series", "concurrency", key])
        for label, rows in data.items():
            writer.writerows([label, int(level), value] for level, value in rows)


def plot(path: Path, title: str, ylabel: str, data: dict[str, list[list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=100)
    for label, rows in data.items():
        axes.plot([row[0] for row in rows], [row[1] for row in rows], marker="o", label=label)
    levels = sorted({row[0] for rows in data.values() for row in rows})
    axes.set_xscale("log", base=2)
    axes.set_xticks(levels, [str(int(level)) for level in levels])
    axes.set_xlabel("concurrency (requests in flight)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def summary_markdown(points: list[BenchPoint], title: str, with_run: bool) -> str:
    lines = [f"# {title}", "", "| series | release | concurrency | " + " | ".join(SUMMARY_KEYS) + " |"]
    lines.append("|" + " --- |" * (3 + len(SUMMARY_KEYS)))
    for point in sorted(points, key=lambda p: (p.label(with_run), p.concurrency)):
        values = [_cell(point.result.get(key)) for key in SUMMARY_KEYS]
        lines.append(
            f"| {point.label(with_run)} | {point.release} | {point.concurrency} | "
            + " | ".join(values)
            + " |"
        )
    lines += ["", "Plots: " + ", ".join(f"[{stem}]({stem}.png)" for stem, _, _ in METRICS), ""]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def write_report(out: Path, compare: Path | None = None, title: str = "vLLM bench") -> dict:
    """Plots, data and summary.md of a run (and the run it is compared with) in the run's directory."""
    if compare is not None and compare.name == out.name:
        raise BenchReportError(f"the runs compared must have different names, not both {out.name}")
    points = load_run(out) + (load_run(compare) if compare is not None else [])
    with_run = compare is not None
    files = []
    for stem, key, ylabel in METRICS:
        data = series(points, key, with_run)
        write_data(out / stem, key, data)
        plot(out / f"{stem}.png", f"{title}: {ylabel}", ylabel, data)
        files += [str(out / f"{stem}.{ext}") for ext in ("png", "csv", "json")]
    summary = summary_markdown(points, title, with_run)
    (out / "summary.md").write_text(summary)
    files.append(str(out / "summary.md"))
    return {"files": files, "summary": summary, "series": sorted({p.label(with_run) for p in points})}
