# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What a vLLM plan says: the :class:`VllmPlan` record, the kinds of refusal, and how messages
write sizes, token counts and GPU indexes.

One way of refusing: a step records a refusal with :meth:`VllmPlan.refuse` and planning goes on
as far as the data allows (so a plan can name several problems at once); a plan fits only when
no refusal was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import GIB

# Refusal kinds (VllmPlan.reason_codes); docs/planning.md explains each.
INVALID_INPUT = "invalid_input"
NO_GPU_LAYOUT = "gpu_count"
UNSUPPORTED_LAYOUT = "unsupported_layout"
INSUFFICIENT_MEMORY = "insufficient_memory"
CONTEXT_TOO_LONG = "context_too_long"
COMPUTE_CAPABILITY = "compute_capability"
MIXED_GPUS = "mixed_gpus"
MIG_TOO_SMALL = "mig_too_small"
CPU_NOT_SERVABLE = "cpu_not_servable"
VLLM_TOO_OLD = "vllm_version"
GPU_DISCOVERY = "gpu_discovery"
NO_DRIVER = "no_driver"
REFUSAL_KINDS = (
    INVALID_INPUT,
    NO_GPU_LAYOUT,
    UNSUPPORTED_LAYOUT,
    INSUFFICIENT_MEMORY,
    CONTEXT_TOO_LONG,
    COMPUTE_CAPABILITY,
    MIXED_GPUS,
    MIG_TOO_SMALL,
    CPU_NOT_SERVABLE,
    VLLM_TOO_OLD,
    GPU_DISCOVERY,
    NO_DRIVER,
)


@dataclass
class VllmPlan:
    """A plan (``fits`` true) or a refusal (``fits`` false, with ``reasons``)."""

    host: str | None
    model: str
    fits: bool = False
    reasons: list[str] = field(default_factory=list)
    reason_codes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    suggested_gpu_counts: list[int] = field(default_factory=list)
    suggested_max_model_len: int | None = None
    device: str = "cuda"
    gpu_name: str | None = None
    gpu_count: int = 0
    gpus_used: int = 0
    gpu_indices: list[int] = field(default_factory=list)
    gpu_memory_mib: int = 0
    compute_capability: str | None = None
    interconnect: str | None = None
    layout: str | None = None
    tensor_parallel_size: int = 0
    data_parallel_size: int = 0
    pipeline_parallel_size: int = 0
    enable_expert_parallel: bool = False
    weights_gib: float = 0.0
    weights_gib_per_gpu: float = 0.0
    overhead_gib_per_gpu: float = 0.0
    kv_cache_gib_per_gpu: float = 0.0
    kv_cache_dtype: str = "auto"
    kv_cache_bytes_per_token: int = 0
    kv_cache_tokens: int = 0
    kv_cache_tokens_per_replica: int = 0
    max_model_len: int = 0
    max_model_len_arg: str | None = None
    requested_max_model_len: int | None = None
    context_fits: bool = False
    max_num_seqs: int = 0
    gpu_memory_utilization: float | None = None
    served_model_name: str | None = None
    port: int | None = None
    vllm_version: str | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    trust_remote_code: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)
    vllm_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    engine_ready_timeout_s: int = 0
    start_timeout_s: int = 0
    alternatives: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, code: str, reason: str) -> VllmPlan:
        self.fits = False
        if code not in self.reason_codes:
            self.reason_codes.append(code)
        self.reasons.append(reason)
        return self

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gib(value: float) -> str:
    return f"{value / GIB:,.1f} GiB"


def tokens(value: int) -> str:
    return f"{value:,}"


def indices(values: list[int]) -> str:
    return ",".join(str(i) for i in values)


__all__ = ["REFUSAL_KINDS", "VllmPlan", "gib", "indices", "tokens"]
