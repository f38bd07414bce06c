#!/usr/bin/python
"""Ansible module: prove a deployed OpenAI-compatible vLLM endpoint works, with the official client."""
# Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: openai_check
short_description: Verify a vLLM OpenAI-compatible endpoint with the official openai client
version_added: 0.1.0
description:
  - Talks to a deployed endpoint with the official C(openai) Python client and runs the checks asked
    for (all by default), in this order.
  - C(models) - the served model name is listed by C(/v1/models).
  - C(completion) and C(chat) - a non-empty answer with token usage.
  - C(streaming) - a streamed chat answer arrives in several chunks; reports time to first token,
    tokens per second and the chunk count.
  - C(tool_call) - with a C(get_weather)-style tool (or O(tool)), the answer holds a parsed tool call
    whose name and arguments are valid against the tool's JSON schema.
  - C(reasoning) - tells which MiniMax reasoning parser the server behaves like -
    C(minimax_m2_append_think) keeps C(<think>...</think>) in C(content), C(minimax_m2) moves the
    thinking to the C(reasoning) field.
  - C(tls) - on an C(https) O(base_url), the certificate verifies against O(ca_file) (else the system
    store) for the address in O(base_url); a warning when it has fewer than O(cert_warn_days) days left.
    Skipped on plain C(http).
  - C(auth) - with O(api_key) set, requests without a key and with a wrong key are refused (401).
    With O(probe_routes), every route vLLM registers (but O(public_paths)) is also sent, with its
    method, without a key and with a wrong key, and must be refused (401, 403, 404 or 405).
    Without O(api_key) the check is skipped (reported ok, with C(skipped=true)).
  - C(sampling) - sampling settings are accepted, with C(top_k) sent in C(extra_body); a request
    with an out-of-range C(top_k) must be refused, which proves C(extra_body) reaches vLLM's sampler.
  - Each failure says what went wrong and, where it can be known, why, for example tool-call XML in
    C(content) means the server runs without C(--tool-call-parser); connection refused means the
    service is not up (the last lines of its journal are attached, see O(journal_unit) and
    O(journal_lines)); a 404 for the model means the served name differs (the served names are listed).
  - If the endpoint refuses connections, the checks after the first one are not run (reported as
    failed with C(error_kind=not_run)).
  - Returns a structured report that playbooks can save as JSON (see O(report_path)). The module
    never changes anything, so C(changed) is always false.
author:
  - llmfleet developers
requirements:
  - "openai (the official OpenAI Python client) on the Python that runs the module. Run the task on the
    controller (C(delegate_to: localhost) with the controller environment), or on the host with
    C(ansible_python_interpreter) set to the vLLM release environment, which holds C(openai) because
    vLLM depends on it."
  - jsonschema is used to validate tool arguments when importable; otherwise a subset validator covers
    C(type), C(enum), C(const), C(properties), C(required), C(additionalProperties=false) and C(items).
options:
  base_url:
    description:
      - The API root of the endpoint, ending in C(/v1).
    type: str
    required: true
  api_key:
    description:
      - The API key the server was started with (C(--api-key) / C(VLLM_API_KEY)).
      - When set, the C(auth) check proves requests without it or with a wrong one are refused.
    type: str
  model:
    description:
      - The served model name to ask for (C(--served-model-name), or the model path when not set).
    type: str
    required: true
  checks:
    description:
      - The checks to run. They always run in the order listed in the choices.
    type: list
    elements: str
    choices: [tls, models, completion, chat, streaming, tool_call, reasoning, auth, sampling]
    default: [tls, models, completion, chat, streaming, tool_call, reasoning, auth, sampling]
  timeout:
    description:
      - Seconds to wait for each request. Requests are not retried.
    type: float
    default: 120
  max_tokens:
    description:
      - C(max_tokens) for each generation request. Thinking models use part of it to think, so a small
        value can cut an answer off before it starts (the C(chat) check then says so).
    type: int
    default: 512
  sampling:
    description:
      - "Sampling settings sent with every generation request, for example the vendor's
        C({temperature: 1.0, top_p: 0.95, top_k: 20}) for MiniMax-M2."
      - C(temperature), C(top_p), C(presence_penalty), C(frequency_penalty), C(seed), C(stop) and C(n)
        are OpenAI parameters; any other key (C(top_k), C(min_p), C(repetition_penalty), ...) is a vLLM
        extension and is sent in C(extra_body).
      - The C(sampling) check adds C(top_k=20) when no C(top_k) is given.
    type: dict
    default: {}
  tool:
    description:
      - "The tool the C(tool_call) check offers, as an OpenAI tool definition
        (C({type: function, function: {name, description, parameters}})) or just its C(function) part."
      - Defaults to C(get_weather) with parameters C(location) (string, required) and C(unit)
        (C(celsius) or C(fahrenheit)).
    type: dict
  tool_prompt:
    description:
      - The user message of the C(tool_call) check. Defaults to a weather question for the default tool,
        and to "Call the NAME tool now with suitable arguments." for a custom one.
    type: str
  expect_reasoning_parser:
    description:
      - Fail the C(reasoning) check unless the server behaves like this reasoning parser.
      - C(none) expects no reasoning output handling at all.
      - When not set, the check passes for either MiniMax parser and fails when no parser is seen.
    type: str
    choices: [minimax_m2_append_think, minimax_m2, none]
  journal_unit:
    description:
      - The systemd unit of the service. When the endpoint refuses connections or fails with a server
        error, the module runs C(journalctl -u UNIT -n 30 --no-pager) where it runs and attaches the
        lines.
      - That only works when the module runs on the service's host. When the task is delegated to the
        controller, fetch the lines on the host and pass them in O(journal_lines) instead.
    type: str
  journal_lines:
    description:
      - Journal lines of the service, gathered by the playbook; attached instead of running
        C(journalctl) when the endpoint refuses connections or fails with a server error.
    type: list
    elements: str
  report_path:
    description:
      - Write the report as JSON to this file, atomically, on the machine that runs the module.
        The directory must exist. The file is not written in check mode.
    type: path
  ca_file:
    description:
      - CA bundle (PEM) the endpoint's certificate is verified with. Without it the client trusts the
        system store, or the bundle in E(SSL_CERT_FILE).
    type: path
  cert_warn_days:
    description:
      - The C(tls) check warns when the certificate has fewer days left than this.
    type: int
    default: 30
  probe_routes:
    description:
      - "The routes the server registers, as C({path: [methods]}) or an OpenAPI C(paths) object - for
        vLLM, the C(paths) of its C(/openapi.json) read on the host - which the C(auth) check probes
        without a key and with a wrong one."
    type: dict
  public_paths:
    description:
      - Paths served without a key, left out of the probes.
    type: list
    elements: str
    default: [/health]
attributes:
  check_mode:
    details:
      - The checks only read from the endpoint (requests to C(/v1)), so they run in check mode too and
        return the same report. O(report_path) is not written in check mode.
  idempotent:
    details:
      - Nothing is changed; C(changed) is always false. The report file is an output, not managed state.
extends_documentation_fragment:
  - llmfleet.serve.attributes
notes:
  - vLLM guards only paths under C(/v1) with its API key; C(/health) and C(/metrics) stay open.
  - The tool call, reasoning and sampling checks are written for vLLM serving MiniMax-M2 with its
    C(minimax_m2) tool parser; deselect them in O(checks) for other servers or models.
seealso:
  - name: vLLM OpenAI-compatible server
    description: The API surface these checks exercise.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
"""

EXAMPLES = r"""
- name: Read the service's last journal lines on the host (shown if the endpoint is down)
  ansible.builtin.command: journalctl -u vllm.service -n 30 --no-pager
  register: vllm_journal
  changed_when: false
  check_mode: false

- name: Verify the endpoint from the controller and keep the report
  llmfleet.serve.openai_check:
    base_url: "http://{{ ansible_host }}:8000/v1"
    api_key: "{{ vllm_service_api_key }}"
    model: MiniMax-M2
    sampling: {temperature: 1.0, top_p: 0.95, top_k: 20}
    expect_reasoning_parser: minimax_m2_append_think
    journal_lines: "{{ vllm_journal.stdout_lines }}"
    report_path: "{{ playbook_dir }}/reports/{{ inventory_hostname }}-openai-check.json"
  delegate_to: localhost

- name: Verify on the host itself, with the Python of the vLLM release environment
  llmfleet.serve.openai_check:
    base_url: http://127.0.0.1:8000/v1
    api_key: "{{ vllm_service_api_key }}"
    model: MiniMax-M2
    journal_unit: vllm.service
  vars:
    ansible_python_interpreter: /opt/llmfleet/vllm/current/bin/python

- name: Only the quick checks
  llmfleet.serve.openai_check:
    base_url: http://10.0.0.5:8000/v1
    model: MiniMax-M2
    checks: [models, chat, tool_call]
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: A summary; on failure it names each failed check with its error and diagnosis.
  returned: always
  type: str
  sample: >-
    1 of 8 checks failed against http://10.0.0.5:8000/v1 (model MiniMax-M2): tool_call: no parsed tool
    call in the answer -> tool-call XML (<minimax:tool_call>/<invoke>) came back in `content` and
    `tool_calls` is empty: the server runs without `--tool-call-parser minimax_m2` (or with a parser for
    another model); start it with `--enable-auto-tool-choice --tool-call-parser minimax_m2`
report:
  description: The full report, also on failure. Each check has C(ok), C(skipped), C(latency_s),
    C(details), C(error), C(error_kind) and C(diagnosis).
  returned: always (unless the openai library is missing or the arguments are invalid)
  type: dict
  contains:
    ok:
      description: Whether every check passed.
      type: bool
    base_url:
      description: The endpoint checked.
      type: str
    model:
      description: The model name asked for.
      type: str
    checks_run:
      description: The checks, in the order they ran.
      type: list
      elements: str
    failed:
      description: The checks that failed (including those not run).
      type: list
      elements: str
    reasoning_parser:
      description: The reasoning parser the server behaves like (C(minimax_m2_append_think),
        C(minimax_m2) or C(none)); null when the reasoning check did not run or got no answer.
      type: str
    duration_s:
      description: Wall time of all checks.
      type: float
    checks:
      description: Per check, keyed by name.
      type: dict
    journal:
      description: The service's last journal lines, attached when the endpoint refused connections or
        failed with a server error and O(journal_unit) or O(journal_lines) was given.
      type: dict
      returned: when gathered
  sample:
    # vLLM 0.32 (CPU build) serving the lab's scripted tiny model with the reference flags; shortened.
    ok: true
    base_url: http://127.0.0.1:18105/v1
    model: llmfleet/tiny
    checks_run: [models, completion, chat, streaming, tool_call, reasoning, auth, sampling]
    failed: []
    reasoning_parser: minimax_m2_append_think
    duration_s: 0.507
    checks:
      models:
        ok: true
        skipped: false
        latency_s: 0.0316
        details: {served: [llmfleet/tiny], max_model_len: 131072, root: /tmp/oc/tiny, owned_by: vllm}
        error: null
        error_kind: null
        diagnosis: null
      streaming:
        ok: true
        skipped: false
        latency_s: 0.0746
        details:
          chunk_count: 13
          chunks_total: 16
          completion_tokens: 14
          tokens_counted_from: usage
          ttft_s: 0.0607
          total_s: 0.0745
          tokens_per_s: 187.9
          decode_tokens_per_s: 1129.84
          first_to_last_chunk_s: 0.0115
          finish_reason: stop
          text_excerpt: "<think>The user asks for the weather in San Francisco. I will call the weather tool.</think>..."
        error: null
        error_kind: null
        diagnosis: null
      tool_call:
        ok: true
        skipped: false
        latency_s: 0.093
        details:
          tool: get_weather
          finish_reason: tool_calls
          calls: [{name: get_weather, arguments: '{"location": "San Francisco, CA", "unit": "celsius"}'}]
          arguments: {location: San Francisco, CA, unit: celsius}
          schema_errors: []
        error: null
        error_kind: null
        diagnosis: null
      auth:
        ok: true
        skipped: false
        latency_s: 0.0086
        details: {key_configured: true, statuses: {no_key: 401, configured_key: 200, wrong_key: 401}, enforced: true}
        error: null
        error_kind: null
        diagnosis: null
"""

import json
import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmfleet.serve.plugins.module_utils import openai_checks as oc

JOURNAL_LINES = 30
JOURNAL_KINDS = ("connection_refused", "server_error")


def argument_spec() -> dict[str, Any]:
    return {
        "base_url": {"type": "str", "required": True},
        "api_key": {"type": "str", "no_log": True},
        "model": {"type": "str", "required": True},
        "checks": {"type": "list", "elements": "str", "choices": list(oc.CHECKS), "default": list(oc.CHECKS)},
        "timeout": {"type": "float", "default": 120},
        "max_tokens": {"type": "int", "default": 512},
        "sampling": {"type": "dict", "default": {}},
        "tool": {"type": "dict"},
        "tool_prompt": {"type": "str"},
        "expect_reasoning_parser": {"type": "str", "choices": list(oc.REASONING_PARSERS)},
        "journal_unit": {"type": "str"},
        "journal_lines": {"type": "list", "elements": "str"},
        "report_path": {"type": "path"},
        "ca_file": {"type": "path"},
        "cert_warn_days": {"type": "int", "default": 30},
        "probe_routes": {"type": "dict"},
        "public_paths": {"type": "list", "elements": "str", "default": ["/health"]},
    }


def openai_missing_message() -> str:
    return (
        missing_required_lib("openai") + ". Run the task on the controller"
        " (delegate_to: localhost, with the controller environment that holds openai), or set"
        " ansible_python_interpreter to the vLLM release environment on the host (its bin/python),"
        " which holds openai because vLLM depends on it. Do not pip-install into the system Python."
    )


def gather_journal(module: AnsibleModule) -> dict[str, Any] | None:
    """The service's last journal lines: those the playbook passed in, else journalctl where we run."""
    unit = module.params["journal_unit"]
    if module.params["journal_lines"] is not None:
        return {
            "unit": unit,
            "source": "journal_lines",
            "lines": module.params["journal_lines"][-JOURNAL_LINES:],
        }
    if not unit:
        return None
    journalctl = module.get_bin_path("journalctl")
    if journalctl is None:
        return {
            "unit": unit,
            "source": "journalctl",
            "lines": [],
            "error": "journalctl is not installed here",
        }
    argv = [journalctl, "-u", unit, "-n", str(JOURNAL_LINES), "--no-pager"]
    rc, out, err = module.run_command(argv)
    journal: dict[str, Any] = {"unit": unit, "source": "journalctl", "lines": out.splitlines()}
    if rc != 0:
        journal["error"] = f"{' '.join(argv)} exited {rc}: {err.strip()}"
    return journal


def write_report(module: AnsibleModule, path: str, data: dict[str, Any]) -> None:
    """Write the report atomically: a temporary file beside the target, then a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        module.fail_json(msg=f"report_path: directory {directory} does not exist", report=data, changed=False)
    fd, tmp = tempfile.mkstemp(prefix=".openai_check.", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o644)
    module.atomic_move(tmp, os.path.abspath(path))


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if oc.openai is None:
        module.fail_json(msg=openai_missing_message(), exception=oc.OPENAI_IMPORT_ERROR)
    p = module.params
    try:
        tool = oc.normalize_tool(p["tool"]) if p["tool"] is not None else oc.DEFAULT_TOOL
    except ValueError as exc:
        module.fail_json(msg=f"tool: {exc}; give {{type: function, function: {{name, parameters}}}}")
    opts = oc.CheckOptions(
        model=p["model"],
        base_url=p["base_url"],
        api_key=p["api_key"],
        timeout=p["timeout"],
        max_tokens=p["max_tokens"],
        sampling=p["sampling"],
        tool=tool,
        tool_prompt=p["tool_prompt"],
        expect_reasoning_parser=p["expect_reasoning_parser"],
        ca_file=p["ca_file"],
        cert_warn_days=p["cert_warn_days"],
        probe_routes=p["probe_routes"],
        public_paths=tuple(p["public_paths"]),
    )
    report = oc.run_checks(oc.make_client(opts), opts, p["checks"])
    msg = report.summary()
    for result in report.results:
        if result.ok and result.details.get("warning"):
            module.warn(f"{result.name}: {result.details['warning']}")
    if any(r.error_kind in JOURNAL_KINDS for r in report.results):
        report.journal = gather_journal(module)
        if report.journal and report.journal["lines"]:
            name = report.journal["unit"] or "the service"
            msg += f"\nlast journal lines of {name}:\n" + "\n".join(report.journal["lines"][-10:])
    data = report.to_dict()
    if p["report_path"] and not module.check_mode:
        write_report(module, p["report_path"], data)
    if not report.ok:
        module.fail_json(msg=msg, report=data, changed=False)
    module.exit_json(msg=msg, report=data, changed=False)


if __name__ == "__main__":
    main()
