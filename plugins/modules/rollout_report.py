#!/usr/bin/python
# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Record one host's outcome in a rollout's report (JSON on the controller) and return its table."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_report
short_description: Record a host's rollout outcome in the report and return the report's table
version_added: 0.1.0
description:
  - Sets the entry of O(host) in the rollout report at O(path), a JSON file, under a lock, so that the hosts
    of a batch may write at once. A report of another manifest is started over.
  - With no O(entry), only reads the report; C(done) then says whether O(host) verified the manifest O(digest)
    in an earlier run and still serves what it verified (O(serving)), so that a re-run skips it.
  - Runs on the controller (C(delegate_to) localhost).
author:
  - llmfleet developers
options:
  path:
    description: The report file; its directory is created.
    type: path
    required: true
  host:
    description: The inventory name of the host.
    type: str
    required: true
  digest:
    description: The manifest's digest.
    type: str
    required: true
  entry:
    description:
      - The host's outcome - C(batch), C(result), C(from) and C(to) (C(release), C(revision), C(flags)),
        C(steps) (C(step), C(result), C(seconds)), C(rolled_back), C(reason) - with the C(manifest) and its
        C(manifest_digest).
    type: dict
  serving:
    description: What the host serves now (C(release), C(revision), C(flags)), for C(done).
    type: dict
    default: {}
extends_documentation_fragment:
  - llmfleet.serve.attributes
attributes:
  check_mode:
    support: full
    details: In check mode the report is not written.
"""

EXAMPLES = r"""
- name: Record the host's outcome
  llmfleet.serve.rollout_report:
    path: rollout/production.json
    host: "{{ inventory_hostname }}"
    digest: "{{ manifest_digest }}"
    entry: "{{ outcome }}"
  delegate_to: localhost
"""

RETURN = r"""
report:
  description: The report as written.
  returned: always
  type: dict
table:
  description: One line per host, in batch order.
  returned: always
  type: list
  elements: str
  sample: ["release tiny-v2 (3f2a9c1d0b7e)", "batch 1  gpu-01  verified  vllm-0.33.0-5d0f7a0c3c1b main flags 1a2b -> ..."]
done:
  description: Whether the host verified this manifest before and still serves what it verified.
  returned: always
  type: bool
"""

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils.rollout_report import (
    is_done,
    record_host,
    report_table,
)


def read_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def write_report(path: Path, report: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(report, tmp, indent=2)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "host": {"type": "str", "required": True},
            "digest": {"type": "str", "required": True},
            "entry": {"type": "dict"},
            "serving": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    path = Path(params["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = read_report(path)
        changed = False
        if params["entry"] is not None:
            updated = record_host(
                report, params["host"], {**params["entry"], "manifest_digest": params["digest"]}
            )
            changed = updated != report
            report = updated
            if changed and not module.check_mode:
                write_report(path, report)
    module.exit_json(
        changed=changed,
        report=report,
        table=report_table(report),
        done=is_done(report, params["host"], params["digest"], params["serving"]),
    )


if __name__ == "__main__":
    main()
