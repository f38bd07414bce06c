#!/usr/bin/env python3
"""Time the planning of 1,000 hosts from captured GPU facts (goal: under 2 s for the planning).

The captures in tests/fixtures/nvidia-smi/ and inventories/examples/*/captures/ are parsed once
(as the gpu_facts module would) into facts; then 1,000 hosts, cycling through those facts, are
planned for MiniMax-M2 through the ``vllm_plan`` filter with a profile dict (as plan.yml does, so
profile validation is included for every host). Parsing is timed apart from planning.

    .venv/bin/python benchmarks/bench_plan.py [--hosts 1000] [--repeat 5] [--model minimax-m2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.llmfleet.serve.plugins.filter.vllm_plan import (  # noqa: E402
    model_profile,
    vllm_plan,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import (  # noqa: E402
    facts_from_texts,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import (  # noqa: E402
    NvidiaSmiError,
)

FIXTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
EXAMPLES = REPO / "inventories" / "examples"


def capture_sets() -> list[tuple[str, list[Path]]]:
    """One entry per host kind: each fixture alone, and each example inventory's captures together."""
    sets = [(p.name, [p]) for p in sorted(FIXTURES.iterdir()) if p.suffix in (".txt", ".xml", ".csv")]
    for example in sorted(EXAMPLES.iterdir()):
        captures = sorted((example / "captures").glob("*"))
        if captures:
            sets.append((f"examples/{example.name}", captures))
    return sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="minimax-m2")
    args = parser.parse_args()

    started = time.perf_counter()
    facts = []
    for _name, paths in capture_sets():
        try:
            facts.append(facts_from_texts([p.read_text() for p in paths]).as_dict())
        except NvidiaSmiError:
            continue  # error captures fail discovery; the planner never sees them
    facts.append(facts_from_texts([]).as_dict())  # a CPU host
    parse_s = time.perf_counter() - started

    profile = model_profile(args.model)
    hosts = [(f"host-{i:04d}", facts[i % len(facts)]) for i in range(args.hosts)]
    runs = []
    plans: list[dict] = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        plans = [vllm_plan(f, profile, {}, host=h) for h, f in hosts]
        runs.append(time.perf_counter() - started)

    verdicts = Counter("fits" if p["fits"] else p["reason_codes"][0] for p in plans)
    best, median = min(runs), statistics.median(runs)
    print(
        f"captures parsed: {len(facts)} host kinds in {parse_s * 1000:.0f} ms (not part of the planning figure)"
    )
    print(f"verdicts over {args.hosts} hosts: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    print(
        f"planned {args.hosts} hosts ({args.model}) in {median:.3f} s median, {best:.3f} s best of "
        f"{args.repeat} runs ({median / args.hosts * 1e6:.0f} us per host); goal: under 2 s"
    )
    return 0 if median < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
