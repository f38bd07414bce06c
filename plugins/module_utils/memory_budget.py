# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The GPU memory model: what a layout leaves for the KV cache, and what would fit instead.

Sizes in GiB = 2**30 bytes; GPU memory as nvidia-smi reports it, in MiB:

    budget per GPU   = memory_total x gpu_memory_utilization
    weights per GPU  = dense weights / (TP x PP) + expert weights / (TP x PP [x DP with EP])
    KV per GPU       = budget - weights per GPU - overhead per GPU
    KV bytes / token = 2 x ceil(layers / PP) x ceil(KV heads / TP) x head size x element bytes
    tokens / replica = KV per GPU / KV bytes per token per GPU      (one replica = TP x PP GPUs)
    KV tokens        = tokens per replica x DP                      (the host's total)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    GIB,
    MIB,
    ModelProfile,
    ParallelLayout,
    ceil_div,
    round_down,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.parallel_layouts import (
    candidate_layouts,
    supported_gpu_counts,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_result import (
    COMPUTE_CAPABILITY,
    INSUFFICIENT_MEMORY,
    VllmPlan,
    gib,
    tokens,
)

#: vLLM allocates the KV cache in blocks of this many tokens
KV_BLOCK_TOKENS = 16


@dataclass(frozen=True)
class Fit:
    """The memory budget of one layout on one kind of GPU."""

    layout: ParallelLayout
    gpu_memory_bytes: int
    budget_per_gpu: int
    weights_per_gpu: int
    overhead_per_gpu: int
    kv_per_gpu: int
    kv_bytes_per_token_per_gpu: int
    tokens_per_replica: int

    @property
    def total_tokens(self) -> int:
        return self.tokens_per_replica * self.layout.dp

    @property
    def weights_fit(self) -> bool:
        return self.kv_per_gpu > 0


@dataclass(frozen=True)
class GpuBudget:
    """One kind of GPU (or MIG slice) and what the plan may use of it."""

    memory_mib: int
    utilization: float
    overhead_gib: float
    kv_element: int

    def fit(self, profile: ModelProfile, layout: ParallelLayout) -> Fit:
        """The memory model for one layout (see the module docstring)."""
        memory = self.memory_mib * MIB
        budget = int(memory * self.utilization)
        dense = profile.weights_bytes - profile.expert_weights_bytes
        expert_shards = layout.tp * layout.pp * (layout.dp if layout.ep else 1)
        weights = ceil_div(dense, layout.tp * layout.pp) + ceil_div(
            profile.expert_weights_bytes, expert_shards
        )
        overhead = int(self.overhead_gib * GIB)
        kv = budget - weights - overhead
        per_token = (
            2
            * ceil_div(profile.num_layers, layout.pp)
            * ceil_div(profile.num_kv_heads, layout.tp)
            * profile.head_dim
            * self.kv_element
        )
        tokens_fit = round_down(kv // per_token, KV_BLOCK_TOKENS) if kv > 0 else 0
        return Fit(layout, memory, budget, weights, overhead, kv, per_token, tokens_fit)


def nice_len(tokens_fit: int) -> int:
    """Round a memory-bound context down to a multiple of 1024 (vLLM takes any value)."""
    return round_down(tokens_fit, 1024)


def refuse_weights(plan: VllmPlan, profile: ModelProfile, budget: GpuBudget, fit: Fit, gpu_name: str) -> None:
    """Refuse a layout whose weights leave no room for a KV cache; say what would fit."""
    layout = fit.layout
    missing = -fit.kv_per_gpu
    plan.refuse(
        INSUFFICIENT_MEMORY,
        f"{profile.display_name} does not fit on {layout.world_size} x {gpu_name} "
        f"({gib(fit.gpu_memory_bytes)} each): layout {layout.name} needs {gib(fit.weights_per_gpu)} of weights "
        f"+ {budget.overhead_gib:g} GiB reserve per GPU, but {budget.utilization:.0%} of the GPU is "
        f"{gib(fit.budget_per_gpu)}; {gib(missing)} per GPU ({gib(missing * layout.world_size)} in all) "
        "is missing, before any KV cache",
    )
    suggest_counts(plan, profile, budget, profile.min_model_len, 0)
    needed = (
        fit.weights_per_gpu + fit.overhead_per_gpu + profile.min_model_len * fit.kv_bytes_per_token_per_gpu
    )
    higher = needed / fit.gpu_memory_bytes
    if higher <= 0.95 and higher > budget.utilization:
        plan.suggestions.append(
            f"set gpu_memory_utilization: {math.ceil(higher * 100) / 100:.2f} in llmfleet_plan_overrides"
        )


def suggest_counts(
    plan: VllmPlan, profile: ModelProfile, budget: GpuBudget, target: int, current: int
) -> None:
    """Name the GPU counts of the same kind that would fit ``target`` tokens per replica."""
    if COMPUTE_CAPABILITY in plan.reason_codes:  # more GPUs of a kind that cannot run it won't help
        return
    for count in supported_gpu_counts(profile, limit=16):
        if count == current:
            continue
        for layout in candidate_layouts(profile, count):
            fit = budget.fit(profile, layout)
            if fit.tokens_per_replica >= target:
                plan.suggested_gpu_counts.append(count)
                context = min(profile.max_model_len, nice_len(fit.tokens_per_replica))
                plan.suggestions.append(
                    f"{count} GPUs of this kind would fit ({layout.name}: {tokens(fit.total_tokens)} tokens "
                    f"of KV cache, max context {tokens(context)})"
                )
                break


__all__ = ["KV_BLOCK_TOKENS", "Fit", "GpuBudget", "nice_len", "refuse_weights", "suggest_counts"]
