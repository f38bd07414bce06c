"""Filters for the vllm_service role: the systemd command line, its start limit, the check of hand-set flags and
the fix for a command line vLLM refuses."""

from __future__ import annotations

from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.service_args import (
    extra_args_conflicts,
    start_limit_interval_s,
    systemd_exec,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_args import refusal_fix


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "systemd_exec": systemd_exec,
            "vllm_extra_args_conflicts": extra_args_conflicts,
            "vllm_start_limit_interval": start_limit_interval_s,
            "vllm_args_refusal_fix": refusal_fix,
        }
