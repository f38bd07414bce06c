#!/usr/bin/python
# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Check a vLLM server command line with the installed vLLM's own argument parser and parser registries."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_args_check
short_description: Check a vLLM server command line with the installed vLLM's own parser
version_added: 0.1.0
description:
  - Builds the argument parser of the installed vLLM's OpenAI-compatible server (C(make_arg_parser) on a
    C(FlexibleArgumentParser)) and parses O(argv) with it, then runs vLLM's own quick checks of the parsed
    arguments where the release has them.
  - argparse does not check parser names, so the values of C(--tool-call-parser) and C(--reasoning-parser)
    are looked up in vLLM's C(ToolParserManager) and C(ReasoningParserManager) registries; an unknown name is
    refused with the list of known ones. A name given together with C(--tool-parser-plugin) or
    C(--reasoning-parser-plugin) is left to the plugin.
  - Module paths move between vLLM releases; the known locations are tried in turn, and the failure names
    every location tried when none exists.
  - Run it with the Python of the vLLM environment (C(ansible_python_interpreter) on the task). It sets
    C(VLLM_TARGET_DEVICE=cpu) in its own process before importing vLLM, so that a CUDA build parses on a
    host without a usable GPU; nothing else is affected. Importing vLLM takes about ten seconds.
author:
  - llmfleet developers
options:
  argv:
    description:
      - The arguments vLLM's server would get, after its entry point (for
        C(python -m vllm.entrypoints.openai.api_server --model DIR ...) everything from C(--model) on).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    details: Read-only; it runs the same in check mode.
extends_documentation_fragment:
  - llmfleet.serve.attributes
notes:
  - "On refusal the module fails with vLLM's own message, for example C(unrecognized arguments: --no-such-flag),
    and returns the refused arguments in RV(refused)."
"""

EXAMPLES = r"""
- name: Check the planned command line before writing the unit
  llmfleet.serve.vllm_args_check:
    argv: [--model, /srv/models/MiniMax-M2, --tensor-parallel-size, "8", --enable-expert-parallel,
           --tool-call-parser, minimax_m2, --reasoning-parser, minimax_m2_append_think]
  vars:
    ansible_python_interpreter: /opt/llmfleet/current/bin/python
"""

RETURN = r"""
accepted:
  description: Whether vLLM accepted the command line.
  returned: when the parser was found
  type: bool
  sample: true
vllm_version:
  description: The installed vLLM's version.
  returned: when vLLM imports
  type: str
  sample: 0.32.0
parser_from:
  description: Where the server's argument parser was found.
  returned: when the parser was found
  type: str
  sample: vllm.entrypoints.launchers.cli_args.make_arg_parser
refused:
  description: The arguments vLLM refused (empty when it accepted the command line).
  returned: when the parser was found
  type: list
  elements: str
  sample: [--no-such-flag]
known_parsers:
  description: Parser names of each registry checked, by option (tool_call_parser, reasoning_parser).
  returned: when the parser was found
  type: dict
  sample: {tool_call_parser: [hermes, minimax_m2], reasoning_parser: [minimax_m2, minimax_m2_append_think]}
"""

import importlib
import os
import sys
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_args import (
    VllmApiNotFound,
    builtin_sys_intern,
    check_command_line,
    stdout_to_stderr,
)


def argument_spec() -> dict[str, Any]:
    return {"argv": {"type": "list", "elements": "str", "required": True}}


def run(argv: list[str]) -> dict[str, Any]:
    """The check's result; ``msg`` set when vLLM refuses the command line or cannot be asked."""
    os.environ["VLLM_TARGET_DEVICE"] = "cpu"
    with stdout_to_stderr(), builtin_sys_intern():
        try:
            version = str(getattr(importlib.import_module("vllm"), "__version__", "unknown"))
        except Exception as exc:  # whatever stops vLLM from importing is the answer
            return {"msg": f"cannot import vLLM with {sys.executable}: {type(exc).__name__}: {exc}"}
        try:
            result = check_command_line(argv, importlib.import_module)
        except VllmApiNotFound as exc:
            return {"msg": f"vLLM {version}: the server's argument parser or a parser registry is {exc}"}
    facts = {
        "accepted": result.ok,
        "vllm_version": version,
        "parser_from": result.parser_from,
        "refused": result.refused,
        "known_parsers": result.known_parsers,
    }
    return {**facts, "msg": result.message} if not result.ok else facts


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = run(module.params["argv"])
    if "msg" in result:
        module.fail_json(**result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
