"""Filters for the vllm_service role: the systemd command line and the check of hand-set flags."""

from __future__ import annotations

from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.service_args import (
    extra_args_conflicts,
    systemd_exec,
)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"systemd_exec": systemd_exec, "vllm_extra_args_conflicts": extra_args_conflicts}
