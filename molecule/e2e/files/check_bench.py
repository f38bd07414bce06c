"""Check a bench run's report: each PNG decodes, and the data beside it has one series per expected
label and one point per concurrency level, equal to the result JSON files.

    check_bench.py RUN_DIR --series e2e-a e2e-b --levels 1 2 [--compare BEFORE_DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matplotlib import image

METRICS = {"ttft": "mean_ttft_ms", "itl": "mean_itl_ms", "throughput": "output_throughput"}


def expected(results: Path, key: str, prefix: str) -> dict[str, list[list[float]]]:
    series: dict[str, list[list[float]]] = {}
    for path in sorted(results.glob("*.json")):
        result = json.loads(path.read_text())
        series.setdefault(prefix + result["llmfleet_host"], []).append(
            [result["max_concurrency"], result[key]]
        )
    return {label: sorted(points) for label, points in series.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--series", nargs="+", required=True)
    parser.add_argument("--levels", nargs="+", type=int, required=True)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args()
    problems = []
    for stem, key in METRICS.items():
        pixels = image.imread(args.run / f"{stem}.png")
        if pixels.shape[0] < 100 or pixels.shape[1] < 100:
            problems.append(f"{stem}.png: {pixels.shape}")
        data = json.loads((args.run / f"{stem}.json").read_text())["series"]
        want = expected(args.run / "results", key, f"{args.run.name} " if args.compare else "")
        if args.compare:
            want |= expected(args.compare / "results", key, f"{args.compare.name} ")
        labels = sorted(want)
        if sorted(data) != labels or len(labels) != len(args.series) * (2 if args.compare else 1):
            problems.append(f"{stem}: series {sorted(data)}, results give {labels}")
        for label, points in data.items():
            if [int(level) for level, _ in points] != args.levels or points != want.get(label):
                problems.append(f"{stem} {label}: {points}, results give {want.get(label)}")
        csv_rows = (args.run / f"{stem}.csv").read_text().splitlines()[1:]
        if len(csv_rows) != len(labels) * len(args.levels):
            problems.append(f"{stem}.csv: {len(csv_rows)} rows")
    print("\n".join(problems) or f"{args.run}: plots and data match the results")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
