"""Rollout time with serial 1 against serial 2, side by side in one run, on a running fleet.

Rolls two manifests in turn (each run changes every host, so each restarts every vLLM), alternating
the batch size (1, 2, then 2, 1, ...), and prints the wall-clock time of each run and the medians per
batch size, with the per-host step times from the reports (deploy: from the drain to vLLM serving;
check: the proof).

    .venv/bin/python benchmarks/rollout_timing.py --inventory INVENTORY --limit e2e-a,e2e-b \
      --manifest A.yml --manifest B.yml --reports /tmp/rollouts --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def roll(args: argparse.Namespace, manifest: str, serial: int, name: str) -> float:
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        args.inventory,
        str(REPO / "playbooks/rollout.yml"),
        "--limit",
        args.limit,
        "-e",
        json.dumps(
            {
                "llmfleet_release": manifest,
                "llmfleet_rollout_serial": [serial],
                "llmfleet_inventory_name": name,
                "llmfleet_rollout_reports_dir": args.reports,
            }
        ),
    ]
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--limit", required=True)
    parser.add_argument("--manifest", action="append", required=True)
    parser.add_argument("--reports", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    runs = 0
    for round_index in range(args.rounds):
        # 1 then 2, then 2 then 1: each batch size gets each manifest and each place in a round
        for serial in (1, 2) if round_index % 2 == 0 else (2, 1):
            manifest = args.manifest[runs % len(args.manifest)]
            seconds = roll(args, manifest, serial, f"bench-{runs}")
            times[serial].append(seconds)
            print(f"serial {serial}: {Path(manifest).name} {seconds:.1f} s", flush=True)
            runs += 1
    steps: dict[str, list[float]] = {}
    for report in Path(args.reports).glob("bench-*/*.json"):
        for entry in json.loads(report.read_text())["hosts"].values():
            for step in entry["steps"]:
                steps.setdefault(step["step"], []).append(step["seconds"])
    print("| serial | runs (s) | median s |\n| --- | --- | --- |")
    for serial, values in times.items():
        print(f"| {serial} | {', '.join(f'{v:.0f}' for v in values)} | {statistics.median(values):.0f} |")
    print(f"serial 2 / serial 1 (medians): {statistics.median(times[2]) / statistics.median(times[1]):.2f}")
    for step, values in sorted(steps.items()):
        print(f"step {step}: median {statistics.median(values):.1f} s over {len(values)} hosts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
