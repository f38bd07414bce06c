#!/usr/bin/python
# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Wait until a vLLM service answers /health and lists its model, or say why it never will."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_ready
short_description: Wait for a vLLM service to serve its model, and diagnose it when it does not
version_added: 0.1.0
description:
  - Polls C(/health) until it answers 200, then checks that C(/v1/models) lists the served model.
  - While waiting it watches the systemd unit and its journal. A unit that failed, or a log that shows
    the engine died (vLLM's API server can hang after a failed engine start), ends the wait at once
    with the cause and the fix, instead of waiting for the timeout.
  - Runs on the host that runs the service; needs only the Python standard library, systemctl and journalctl.
author:
  - llmfleet developers
options:
  url:
    description: Base URL of the server, without C(/v1) (vLLM on loopback, behind the front door).
    type: str
    default: http://127.0.0.1:8001
  unit:
    description: The systemd unit that runs the server (with or without C(.service)).
    type: str
    required: true
  served_model_name:
    description: The model name C(/v1/models) must list.
    type: str
    required: true
  api_key:
    description: API key for C(/v1/models), when the server requires one.
    type: str
    default: ""
  timeout:
    description: Seconds to wait for the model to load (the plan's start estimate).
    type: int
    default: 600
  interval:
    description: Seconds between polls.
    type: float
    default: 2
attributes:
  check_mode:
    details: Read-only; in check mode it returns at once without waiting.
extends_documentation_fragment:
  - llmfleet.serve.attributes
"""

EXAMPLES = r"""
- name: Wait for vLLM to load the model and answer /health
  llmfleet.serve.vllm_ready:
    unit: llmfleet-vllm
    served_model_name: MiniMaxAI/MiniMax-M2
    api_key: "{{ vllm_api_key }}"
    timeout: 3660
"""

RETURN = r"""
elapsed_s:
  description: Seconds until the server was ready.
  returned: success
  type: float
  sample: 41.7
models:
  description: The model ids /v1/models listed.
  returned: success
  type: list
  elements: str
  sample: [MiniMaxAI/MiniMax-M2]
diagnosis:
  description: Why the server is not serving, and what to do (on failure, when the log shows it).
  returned: failure
  type: dict
  sample:
    cause: torch cannot compile its kernels without the Python headers
    fix: install the OS package with the headers of the host's Python (python3-dev on Debian/Ubuntu)
    evidence: "main.cpp:80:10: fatal error: Python.h: No such file or directory"
journal:
  description: The last lines of the unit's journal (on failure).
  returned: failure
  type: list
  elements: str
"""

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_diagnose import diagnose

JOURNAL_LINES = 200


def http_get(url: str, api_key: str = "", timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class Unit:
    def __init__(self, module: AnsibleModule, name: str) -> None:
        self.module = module
        self.name = name if name.endswith(".service") else f"{name}.service"

    def state(self) -> dict[str, str]:
        rc, out, _ = self.module.run_command(
            ["systemctl", "show", self.name, "-p", "ActiveState,SubState,NRestarts,InvocationID"]
        )
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}

    def journal(self, invocations: list[str]) -> list[str]:
        """The log of these runs of the unit only: earlier runs' failures are history, not a diagnosis."""
        match = [f"_SYSTEMD_INVOCATION_ID={i}" for i in invocations] or ["--unit", self.name]
        rc, out, _ = self.module.run_command(
            ["journalctl", *match, "--lines", str(JOURNAL_LINES), "--output", "cat", "--no-pager"]
        )
        return out.splitlines() if rc == 0 else []


def served_models(module: AnsibleModule, base: str, api_key: str, served_model_name: str) -> list[str]:
    """The models ``/v1/models`` lists; fails unless ``served_model_name`` is one of them."""
    status, body = http_get(f"{base}/v1/models", api_key)
    if status != 200:
        module.fail_json(
            msg=f"{base}/v1/models answered HTTP {status}: {body[:300].decode(errors='replace')}"
        )
    models = [entry.get("id") for entry in json.loads(body).get("data", [])]
    if served_model_name not in models:
        module.fail_json(
            msg=f"{base}/v1/models lists {models}, not {served_model_name!r}: the served model name differs",
            models=models,
        )
    return models


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8001"},
            "unit": {"type": "str", "required": True},
            "served_model_name": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "timeout": {"type": "int", "default": 600},
            "interval": {"type": "float", "default": 2},
        },
        supports_check_mode=True,
    )
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="check mode: not waiting")
    params = module.params
    base = params["url"].rstrip("/")
    unit = Unit(module, params["unit"])
    started = time.monotonic()
    first = unit.state()
    restarts_at_start = first.get("NRestarts", "0")
    # A run that exits is replaced by a new one (Restart=always); its log holds the cause.
    invocations = [first["InvocationID"]] if first.get("InvocationID") else []

    def fail(msg: str) -> None:
        journal = unit.journal(invocations)
        found = diagnose(journal)
        if found:
            msg = f"{msg}: {found.cause}; {found.fix}"
        module.fail_json(msg=msg, diagnosis=asdict(found) if found else None, journal=journal[-30:])

    while True:
        status, _ = http_get(f"{base}/health")
        if status == 200:
            break
        state = unit.state()
        if state.get("InvocationID") and state["InvocationID"] not in invocations:
            invocations.append(state["InvocationID"])
        if state.get("ActiveState") == "failed":
            fail(f"{unit.name} failed while starting")
        if state.get("NRestarts", "0") != restarts_at_start:
            fail(f"{unit.name} restarted while starting (the server exited)")
        found = diagnose(unit.journal(invocations))
        if found:
            fail(f"{unit.name} is not serving")
        waited = time.monotonic() - started
        if waited > params["timeout"]:
            fail(
                f"{unit.name} did not answer {base}/health within {params['timeout']} s (still loading the model?)"
            )
        time.sleep(params["interval"])

    models = served_models(module, base, params["api_key"], params["served_model_name"])
    module.exit_json(changed=False, elapsed_s=round(time.monotonic() - started, 1), models=models)


if __name__ == "__main__":
    main()
