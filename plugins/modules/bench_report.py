#!/usr/bin/python
# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Plots and a Markdown summary from the results of `vllm bench serve` (playbooks/bench.yml)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bench_report
short_description: Plot vLLM bench results against concurrency and summarise them
version_added: 0.1.0
description:
  - Reads the result files C(vllm bench serve --save-result) wrote, one per host and concurrency level, with
    the C(llmfleet_host) and C(llmfleet_release) metadata C(playbooks/bench.yml) adds.
  - Writes C(ttft.png), C(itl.png) and C(throughput.png) (mean time to first token, mean inter-token latency,
    output throughput against concurrency; one line per host), the numbers each plot draws beside it
    (C(.csv), C(.json)), and C(summary.md).
  - With O(compare), the results of an earlier run are drawn on the same axes, one line per run and host.
  - Runs on the controller (C(delegate_to) localhost) with matplotlib.
author:
  - llmfleet developers
options:
  run:
    description: The run's directory; its C(results/) holds the result files (C(*.json)), the report is written in it.
    type: path
    required: true
  compare:
    description: An earlier run's directory (its C(results/)) to draw beside this run; its name must differ.
    type: path
  title:
    description: Title of the plots and the summary.
    type: str
    default: vLLM bench
extends_documentation_fragment:
  - llmfleet.serve.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: The same results give the same data files; the PNGs are drawn again and reported as a change.
"""

EXAMPLES = r"""
- name: Plot this run against the one before the rollout
  llmfleet.serve.bench_report:
    run: bench/after
    compare: bench/before
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
files:
  description: Every file written.
  returned: success
  type: list
  elements: str
  sample: [bench/run/ttft.png, bench/run/ttft.csv, bench/run/ttft.json, bench/run/summary.md]
series:
  description: The lines drawn (hosts, or run name and host with a comparison).
  returned: success
  type: list
  elements: str
  sample: [gpu-01, gpu-02]
summary:
  description: The Markdown summary (one row per series and concurrency level).
  returned: success
  type: str
  sample: "# vLLM bench\n\n| series | release | concurrency | ..."
"""

from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils.bench_report import (
    BenchReportError,
    write_report,
)


def argument_spec() -> dict[str, Any]:
    return {
        "run": {"type": "path", "required": True},
        "compare": {"type": "path"},
        "title": {"type": "str", "default": "vLLM bench"},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec())
    params = module.params
    try:
        report = write_report(
            Path(params["run"]), Path(params["compare"]) if params["compare"] else None, params["title"]
        )
    except (BenchReportError, KeyError, ValueError) as exc:
        module.fail_json(msg=f"cannot report the bench run {params['run']}: {exc}")
    module.exit_json(changed=True, **report)


if __name__ == "__main__":
    main()
