# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Which parallel layouts a model can run with: the rules, and the layouts for a GPU count."""

from __future__ import annotations

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    ModelProfile,
    ParallelLayout,
)

#: GPU counts tried for suggestions when a profile does not list its layouts
GENERIC_GPU_COUNTS = (1, 2, 4, 8)


def layout_problem(profile: ModelProfile, layout: ParallelLayout) -> str | None:
    """Why ``profile`` cannot run with ``layout``, or None when it can."""
    refused = profile.refused_reason(layout)
    if refused:
        return refused
    if profile.layouts and layout not in profile.layouts:
        return (
            f"{layout.name} is not among the layouts {profile.display_name} supports "
            f"({', '.join(x.name for x in profile.layouts)})"
        )
    if layout.ep and not profile.is_moe:
        return "expert parallel needs a MoE model"
    if profile.num_attention_heads % layout.tp:
        return f"{profile.num_attention_heads} attention heads do not split evenly over tensor parallel {layout.tp}"
    kv = profile.num_kv_heads
    if kv % layout.tp and layout.tp % kv:
        return f"{kv} KV heads do not split evenly over tensor parallel {layout.tp}"
    if layout.pp > profile.num_layers:
        return f"pipeline parallel {layout.pp} exceeds the model's {profile.num_layers} layers"
    return _block_problem(profile, layout)


def _block_problem(profile: ModelProfile, layout: ParallelLayout) -> str | None:
    """Block-quantised weights (FP8) need whole blocks on every GPU of a tensor-parallel group."""
    block = profile.weight_block_size
    if not block or layout.tp == 1:
        return None
    if profile.is_moe and not layout.ep and profile.moe_intermediate_size:
        width = profile.moe_intermediate_size / layout.tp
        if width != int(width) or int(width) % block:
            return (
                f"the FP8 block size ({block}) does not divide the per-GPU expert width "
                f"{profile.moe_intermediate_size}/{layout.tp} = {width:g}; add expert parallel"
            )
    if not profile.is_moe and profile.intermediate_size:
        width = profile.intermediate_size / layout.tp
        if width != int(width) or int(width) % block:
            return (
                f"the block size ({block}) does not divide the per-GPU MLP width "
                f"{profile.intermediate_size}/{layout.tp} = {width:g}"
            )
    return None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_layouts(profile: ModelProfile, gpus: int) -> list[ParallelLayout]:
    """Valid layouts for exactly ``gpus`` GPUs, in order of preference."""
    if gpus < 1:
        return []
    if profile.layouts:
        return [x for x in profile.layouts if x.world_size == gpus and layout_problem(profile, x) is None]
    found: list[ParallelLayout] = []
    for tp in _divisors(gpus):  # fewest GPUs per replica first: more replicas, same context
        for ep in (False, True) if profile.is_moe else (False,):
            layout = ParallelLayout(tp=tp, dp=gpus // tp, ep=ep)
            if (not ep or layout.world_size > 1) and layout_problem(profile, layout) is None:
                found.append(layout)
    for tp in reversed(_divisors(gpus)):  # pipeline parallel when tensor parallel alone cannot split
        if tp < gpus:
            layout = ParallelLayout(tp=tp, pp=gpus // tp)
            if layout_problem(profile, layout) is None and layout not in found:
                found.append(layout)
    return found


def supported_gpu_counts(profile: ModelProfile, limit: int = 8) -> list[int]:
    counts = sorted({x.world_size for x in profile.layouts}) if profile.layouts else list(GENERIC_GPU_COUNTS)
    return [c for c in counts if (candidate_layouts(profile, c) and (c <= limit or profile.layouts))]


def layout_listing(profile: ModelProfile, count: int) -> str:
    """The names of the layouts for ``count`` GPUs, comma-separated."""
    return ", ".join(x.name for x in candidate_layouts(profile, count))


__all__ = ["candidate_layouts", "layout_listing", "layout_problem", "supported_gpu_counts"]
