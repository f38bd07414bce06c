# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The max context (``max_model_len``) of a plan: the model's maximum, the user's request, and
what the KV cache holds."""

from __future__ import annotations

import math

from ansible_collections.llmfleet.serve.plugins.module_utils.memory_budget import nice_len
from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import GIB, ModelProfile
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_overrides import Overrides
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_result import (
    CONTEXT_TOO_LONG,
    INSUFFICIENT_MEMORY,
    VllmPlan,
    gib,
    tokens,
)


def set_context(
    plan: VllmPlan, profile: ModelProfile, opts: Overrides, tokens_fit: int, per_token: int, device: str
) -> bool:
    """Set max_model_len from what ``tokens_fit`` KV tokens allow; refuse (and say False) if they cannot."""
    target = opts.max_model_len or profile.max_model_len
    if tokens_fit >= target:
        plan.max_model_len = target
        plan.context_fits = True
        return True
    fitting = nice_len(tokens_fit)
    plan.suggested_max_model_len = fitting if fitting >= profile.min_model_len else None
    if opts.max_model_len:
        _refuse_requested(plan, target, tokens_fit, per_token, device)
        return False
    if fitting < profile.min_model_len:
        plan.refuse(
            INSUFFICIENT_MEMORY,
            f"only {tokens(tokens_fit)} tokens of KV cache fit, below the minimum useful context of "
            f"{tokens(profile.min_model_len)} tokens for {profile.display_name}",
        )
        return False
    plan.max_model_len = fitting
    plan.context_fits = True
    plan.warnings.append(
        f"max context limited by memory to {tokens(fitting)} tokens "
        f"({profile.display_name} supports {tokens(profile.max_model_len)})"
    )
    return True


def _refuse_requested(plan: VllmPlan, target: int, tokens_fit: int, per_token: int, device: str) -> None:
    """The user asked for a context the KV cache cannot hold."""
    missing = (target - tokens_fit) * per_token
    where = "per replica" if device == "cuda" else "in VLLM_CPU_KVCACHE_SPACE"
    reason = (
        f"the requested max context {tokens(target)} tokens needs {gib(target * per_token)} of KV cache "
        f"{where}, but only {gib(tokens_fit * per_token)} is free ({tokens(tokens_fit)} tokens): "
        f"{gib(missing)} missing"
    )
    if plan.suggested_max_model_len:
        reason += f"; a max context of {tokens(plan.suggested_max_model_len)} would fit"
        plan.suggestions.append(
            f"set max_model_len: {plan.suggested_max_model_len} in llmfleet_plan_overrides"
        )
    if device == "cpu":
        need_gib = math.ceil(target * per_token / GIB)
        plan.suggestions.append(f"set cpu_kvcache_space_gib: {need_gib} in llmfleet_plan_overrides")
    plan.refuse(CONTEXT_TOO_LONG, reason)
    plan.max_model_len = 0


__all__ = ["set_context"]
