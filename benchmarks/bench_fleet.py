"""Time to create a 1-host and a 4-host test fleet, cold (no cached root) and warm, in one run.

    sudo .venv/bin/python benchmarks/bench_fleet.py [--repeat 3]

Cold runs use an empty cache directory (debootstrap downloads and builds the root); warm runs
reuse the cached root. Prints one line per measurement and the warm 4-host/1-host ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLEET_PY = Path(__file__).resolve().parents[1] / "lab" / "fleet.py"


def create_and_destroy(hosts: int, cache: str | None) -> float:
    env = dict(os.environ)
    if cache:
        env["LLMFLEET_LAB_CACHE"] = cache
    spec = {"fleet": f"bench{hosts}", "hosts": [{"name": f"bench-{i}"} for i in range(hosts)]}
    started = time.monotonic()
    subprocess.run([sys.executable, str(FLEET_PY), "create", "--spec", "-"], input=json.dumps(spec),
                   env=env, text=True, capture_output=True, check=True)  # fmt: skip
    elapsed = time.monotonic() - started
    subprocess.run([sys.executable, str(FLEET_PY), "destroy", "--fleet", spec["fleet"]], env=env, check=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for hosts in (1, 4):
        with tempfile.TemporaryDirectory(prefix="llmfleet-cold-") as cache:
            results[f"cold {hosts}"] = [create_and_destroy(hosts, cache)]
    for _ in range(args.repeat):
        for hosts in (1, 4):
            results.setdefault(f"warm {hosts}", []).append(create_and_destroy(hosts, None))
    for name, times in results.items():
        print(f"{name}-host create: median {statistics.median(times):.2f} s over {len(times)} run(s)")
    ratio = statistics.median(results["warm 4"]) / statistics.median(results["warm 1"])
    print(f"warm 4-host / 1-host: {ratio:.2f}")


if __name__ == "__main__":
    main()
