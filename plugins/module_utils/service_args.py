"""The vLLM command line of the service: systemd quoting and checks of hand-set flags against the plan."""

from __future__ import annotations

import re

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_command import PLANNED_FLAGS

# Flags the service sets itself (where vLLM listens, what it serves, the key it asks for).
SERVICE_FLAGS = frozenset({"--model", "--host", "--port", "--api-key"})
SHORT_ALIASES = {
    "-tp": "--tensor-parallel-size",
    "-dp": "--data-parallel-size",
    "-pp": "--pipeline-parallel-size",
}


def parse_flags(argv: list[str]) -> dict[str, str | None]:
    """`--flag value`, `--flag=value` and bare `--flag` into {flag: value or None}."""
    flags: dict[str, str | None] = {}
    index = 0
    while index < len(argv):
        item = str(argv[index])
        if item.startswith("-"):
            name, _, value = item.partition("=")
            name = SHORT_ALIASES.get(name, name).replace("_", "-")
            if not value and index + 1 < len(argv) and not str(argv[index + 1]).startswith("-"):
                value = str(argv[index + 1])
                index += 1
            flags[name] = value or None
        index += 1
    return flags


def extra_args_conflicts(planned_args: list[str], extra_args: list[str]) -> list[str]:
    """Messages for hand-set flags that contradict or bypass the plan."""
    planned = parse_flags(planned_args)
    errors = []
    for flag, value in parse_flags(extra_args).items():
        if flag not in PLANNED_FLAGS | SERVICE_FLAGS:
            continue
        if flag in planned and planned[flag] == value:
            continue
        shown = "set" if value is None else value
        planned_shown = "not set" if flag not in planned else (planned[flag] or "set")
        errors.append(
            f"vllm_service_extra_args sets {flag} {shown}, but the plan has {flag} {planned_shown}: "
            "change it through the plan (llmfleet_plan_overrides), which checks that the model supports it"
        )
    return errors


_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """One argument for ExecStart= (systemd.service(5) "Command lines"): quoted, with % and $ escaped."""
    text = str(arg).replace("%", "%%").replace("$", "$$")
    if _SAFE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def systemd_exec(argv: list[str]) -> str:
    return " ".join(systemd_quote(a) for a in argv)


def start_limit_interval_s(start_timeout_s: int, restart_sec: int, stop_timeout_s: int, burst: int) -> int:
    """StartLimitIntervalSec under which ``burst`` failed loads trip systemd's start limit.

    systemd opens a window at a start and refuses the start that makes the count exceed the burst while
    it comes within the interval of the window's first start. A load that fails only at its start timeout
    is stopped (at most ``stop_timeout_s``) and started again ``restart_sec`` later, so the refused start
    comes ``burst`` such cycles after the first: the interval must hold them all.
    """
    if int(burst) < 1:
        raise ValueError(f"the start limit burst must be 1 or more, not {burst}")
    cycle_s = max(int(start_timeout_s), 0) + max(int(stop_timeout_s), 0) + max(int(restart_sec), 0)
    return int(burst) * cycle_s
