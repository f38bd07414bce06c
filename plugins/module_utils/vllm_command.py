# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The vLLM command line, environment and start timeouts of a plan that fits."""

from __future__ import annotations

import math

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    MIB,
    ModelProfile,
    parse_version,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_overrides import Overrides
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_result import VllmPlan, tokens

#: engine start time besides loading: profiling, torch.compile, CUDA graphs (vLLM's own default)
ENGINE_BASE_TIMEOUT_S = 600
#: what systemd allows beyond the engine timeout (imports, API server, port bind)
START_TIMEOUT_MARGIN_S = 300
#: first vLLM release that accepts --max-model-len auto
MAX_MODEL_LEN_AUTO_MIN_VLLM = (0, 12, 0)

# Every flag the plan may put on vLLM's command line and decides the value of: a hand-set value
# would bypass its fit and layout checks (the service role refuses them in its extra arguments).
PLANNED_FLAGS = frozenset(
    {
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
        "--data-parallel-size",
        "--enable-expert-parallel",
        "--served-model-name",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--max-num-seqs",
        "--kv-cache-dtype",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "--reasoning-parser",
    }
)


def engine_timeout_s(bytes_read: int, rate_mib_s: float) -> int:
    """VLLM_ENGINE_READY_TIMEOUT_S: vLLM's default plus loading at a conservative rate, in minutes."""
    seconds = ENGINE_BASE_TIMEOUT_S + bytes_read / (rate_mib_s * MIB)
    return int(math.ceil(seconds / 60) * 60)


def _max_model_len_arg(plan: VllmPlan, profile: ModelProfile, opts: Overrides) -> str:
    """``auto`` when the user asked for it and the vLLM release has it; else the planned length."""
    if not opts.max_model_len_auto:
        return str(plan.max_model_len)
    version = parse_version(plan.vllm_version)
    if version is None:
        plan.warnings.append(
            "max_model_len_auto needs the installed vLLM version (llmfleet_vllm_version) to "
            "know whether --max-model-len auto is available; using the planner's estimate"
        )
    elif version < MAX_MODEL_LEN_AUTO_MIN_VLLM:
        plan.warnings.append(
            f"vLLM {plan.vllm_version} has no --max-model-len auto (0.12.0 or newer); using the planner's estimate"
        )
    elif opts.max_model_len and opts.max_model_len < profile.max_model_len:
        plan.warnings.append(
            "--max-model-len auto cannot be capped below the model's maximum; using the requested "
            f"{tokens(opts.max_model_len)} tokens"
        )
    else:
        return "auto"
    return str(plan.max_model_len)


def write_command(
    plan: VllmPlan,
    profile: ModelProfile,
    opts: Overrides,
    bytes_read: int,
    device_args: list[str],
    extra: tuple[str, ...] = (),
) -> None:
    """argv, environment and timeouts of a plan that fits (``bytes_read``: the weights it loads)."""
    plan.max_model_len_arg = _max_model_len_arg(plan, profile, opts)
    args = ["--served-model-name", plan.served_model_name or profile.served_model_name]
    args += device_args
    args += ["--max-model-len", plan.max_model_len_arg]
    if plan.device == "cuda" and plan.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", f"{plan.gpu_memory_utilization:g}"]
    args += ["--max-num-seqs", str(plan.max_num_seqs)]
    if plan.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", plan.kv_cache_dtype]
    if plan.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", plan.tool_call_parser]
    if plan.reasoning_parser:
        args += ["--reasoning-parser", plan.reasoning_parser]
    if profile.trust_remote_code:
        args.append("--trust-remote-code")
    args += list(profile.extra_args) + list(extra) + list(opts.extra_args)
    plan.vllm_args = args
    timeout = engine_timeout_s(bytes_read, opts.load_rate_mib_s)
    plan.engine_ready_timeout_s = timeout
    plan.start_timeout_s = timeout + START_TIMEOUT_MARGIN_S
    plan.env["VLLM_ENGINE_READY_TIMEOUT_S"] = str(timeout)


__all__ = ["PLANNED_FLAGS", "engine_timeout_s", "write_command"]
