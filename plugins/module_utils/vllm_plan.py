# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Plan a vLLM deployment from GPU facts, a model profile and user overrides.

``plan_vllm(facts, profile, overrides, host)`` returns a :class:`VllmPlan`: the parallel layout, the
memory budget (weights per GPU, KV cache bytes per token, KV tokens, ``max_model_len``), the vLLM
argv, the environment and the start timeout; or a refusal (``fits`` false) whose ``reasons`` say
what is wrong and whose ``suggestions`` say what would fit.

This file reads the host's GPUs and chooses how to serve on them (whole GPUs, a MIG slice, or the
CPU). The pieces it uses: plan_overrides (what the user may set), parallel_layouts (the layouts a
model can run), memory_budget (the memory model), context_sizing (``max_model_len``), vllm_command
(argv, environment, timeouts) and plan_result (the record, and the one way of refusing).

Standard library and ansible.module_utils only: this file may run on target hosts (Python 3.11).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.context_sizing import set_context
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import Gpu, read_gpu_facts
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import MigDevice as MigSlice
from ansible_collections.llmfleet.serve.plugins.module_utils.memory_budget import (
    KV_BLOCK_TOKENS,
    Fit,
    GpuBudget,
    nice_len,
    refuse_weights,
    suggest_counts,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    CPU_HEAD_SIZES,
    CPU_WEIGHT_FORMATS,
    GIB,
    MIB,
    ModelProfile,
    ParallelLayout,
    ProfileError,
    kv_element_bytes,
    parse_capability,
    parse_version,
    round_down,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.parallel_layouts import (
    candidate_layouts,
    layout_listing,
    layout_problem,
    supported_gpu_counts,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_overrides import (
    OverrideError,
    Overrides,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_result import (
    COMPUTE_CAPABILITY,
    CONTEXT_TOO_LONG,
    CPU_NOT_SERVABLE,
    GPU_DISCOVERY,
    INSUFFICIENT_MEMORY,
    INVALID_INPUT,
    MIG_TOO_SMALL,
    MIXED_GPUS,
    NO_DRIVER,
    NO_GPU_LAYOUT,
    UNSUPPORTED_LAYOUT,
    VLLM_TOO_OLD,
    VllmPlan,
    gib,
    indices,
    tokens,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_command import write_command

DEFAULT_MAX_NUM_SEQS = 256
#: host memory the CPU build needs besides weights and KV cache (Python, torch, vLLM)
CPU_HOST_RESERVE_GIB = 2.0


# --------------------------------------------------------------------------------------------
# The host's GPUs
# --------------------------------------------------------------------------------------------


def _read_gpus(facts: dict[str, Any]) -> tuple[list[Gpu], list[MigSlice]]:
    """The GPUs and MIG devices of the facts, with names for what the facts leave unnamed."""
    gpus, slices = read_gpu_facts(facts)
    for gpu in gpus:
        gpu.name = (gpu.name or "").strip() or "unknown GPU"
    for mig in slices:
        mig.profile = mig.profile or "MIG slice"
    return gpus, slices


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def plan_vllm(
    facts: dict[str, Any] | None,
    profile: ModelProfile,
    overrides: dict[str, Any] | Overrides | None = None,
    host: str | None = None,
    discovery_error: str | None = None,
    vllm_versions: dict[str, str] | None = None,
    port: int | None = None,
    nvidia_pci_gpus: int = 0,
) -> VllmPlan:
    """Plan vLLM for one host. Never raises on bad input: returns a refusal instead.

    ``discovery_error`` is the message of a failed GPU discovery: the plan is then a refusal that
    carries it, so that everything downstream reports why the host has no plan.
    ``vllm_versions`` maps a device (cuda, cpu) to the vLLM release the runtime installs for it; the
    plan carries the one its device gets and checks it against the model's minimum. The override
    ``vllm_version`` wins over it. ``port`` is carried as it is, for the roles and checks downstream.
    ``nvidia_pci_gpus`` is the number of NVIDIA GPUs the PCI bus shows: with no GPU in the facts, the
    driver is missing.
    """
    plan = VllmPlan(host=host, model=profile.name, port=port)
    plan.weights_gib = round(profile.weights_gib, 2)
    plan.served_model_name = profile.served_model_name
    plan.tool_call_parser = profile.tool_call_parser
    plan.reasoning_parser = profile.reasoning_parser
    plan.trust_remote_code = profile.trust_remote_code
    plan.sampling = dict(profile.sampling)
    settings = _apply_overrides(plan, profile, overrides)
    host_gpus = _read_host(plan, facts, discovery_error, nvidia_pci_gpus) if settings else None
    if settings is None or host_gpus is None:
        return plan
    opts, kv_element = settings
    gpus, slices = host_gpus
    plan.device = "cuda" if gpus else "cpu"
    _check_vllm_version(plan, profile, opts.vllm_version or (vllm_versions or {}).get(plan.device))
    if not gpus:
        return _plan_cpu(plan, profile, opts, kv_element)
    return _plan_gpu(plan, profile, opts, kv_element, gpus, slices)


def _apply_overrides(
    plan: VllmPlan, profile: ModelProfile, overrides: dict[str, Any] | Overrides | None
) -> tuple[Overrides, int] | None:
    """The overrides and the bytes of a KV element; None after a refusal of the user's settings."""
    try:
        opts = Overrides.from_dict(overrides)
        kv_dtype = opts.kv_cache_dtype or profile.kv_cache_dtype
        kv_element = kv_element_bytes(kv_dtype, profile.dtype)
    except (OverrideError, ProfileError) as exc:
        plan.refuse(INVALID_INPUT, f"invalid setting: {exc}")
        return None
    if opts.served_model_name:
        plan.served_model_name = opts.served_model_name
    if opts.reasoning_parser and opts.reasoning_parser not in profile.reasoning_parsers:
        plan.refuse(
            INVALID_INPUT,
            f"reasoning parser {opts.reasoning_parser!r} is not one {profile.display_name} supports "
            f"({', '.join(profile.reasoning_parsers) or 'none'})",
        )
        return None
    plan.reasoning_parser = opts.reasoning_parser or plan.reasoning_parser
    plan.kv_cache_dtype = kv_dtype
    plan.requested_max_model_len = opts.max_model_len
    if opts.max_model_len and opts.max_model_len > profile.max_model_len:
        plan.refuse(
            CONTEXT_TOO_LONG,
            f"the requested max context {tokens(opts.max_model_len)} exceeds {profile.display_name}'s maximum "
            f"of {tokens(profile.max_model_len)} tokens; ask for {tokens(profile.max_model_len)} or less",
        )
        return None
    return opts, kv_element


def _read_host(
    plan: VllmPlan, facts: dict[str, Any] | None, discovery_error: str | None, nvidia_pci_gpus: int
) -> tuple[list[Gpu], list[MigSlice]] | None:
    """The host's GPUs and MIG slices from its facts; None after a refusal."""
    if discovery_error:
        plan.refuse(GPU_DISCOVERY, f"GPU discovery failed: {discovery_error}")
        return None
    if not isinstance(facts, dict):
        plan.refuse(
            INVALID_INPUT,
            "no GPU facts for this host: run the llmfleet.serve.gpu_facts module (or give a capture "
            "with llmfleet_gpu_capture) before planning",
        )
        return None
    try:
        gpus, slices = _read_gpus(facts)
    except (OverrideError, TypeError, ValueError) as exc:
        plan.refuse(INVALID_INPUT, f"unreadable GPU facts: {exc}")
        return None
    plan.interconnect = facts.get("interconnect")
    plan.gpu_count = len(gpus)
    if not gpus and nvidia_pci_gpus > 0:
        plan.refuse(
            NO_DRIVER,
            f"{nvidia_pci_gpus} NVIDIA GPU(s) on the PCI bus but no NVIDIA driver answers: install it with "
            "the llmfleet.serve.nvidia_driver role (site.yml does that before it plans), then plan again",
        )
        return None
    return gpus, slices


def _check_vllm_version(plan: VllmPlan, profile: ModelProfile, version: str | None) -> None:
    """Carry the vLLM release the host's device gets; refuse one older than the model needs."""
    plan.vllm_version = version or None
    if not version or not profile.min_vllm_version:
        return
    have, need = parse_version(version), parse_version(profile.min_vllm_version)
    if have is not None and need is not None and have < need:
        setting = "llmfleet_vllm_version" if plan.device == "cuda" else "llmfleet_vllm_cpu_version"
        plan.refuse(
            VLLM_TOO_OLD,
            f"vLLM {version} is too old for {profile.display_name}: it needs vLLM "
            f">= {profile.min_vllm_version}; pin a newer release ({setting})",
        )


def _complete(
    plan: VllmPlan,
    profile: ModelProfile,
    opts: Overrides,
    env: dict[str, str],
    bytes_read: int,
    device_args: list[str],
    extra: tuple[str, ...] = (),
) -> VllmPlan:
    """A plan with no refusal recorded fits: it gets its command line, environment and timeouts."""
    if plan.reason_codes:
        return plan
    plan.fits = True
    plan.max_num_seqs = opts.max_num_seqs or profile.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    plan.env = env
    write_command(plan, profile, opts, bytes_read, device_args, extra)
    return plan


# ---- on the CPU -------------------------------------------------------------------------------


def _plan_cpu(plan: VllmPlan, profile: ModelProfile, opts: Overrides, kv_element: int) -> VllmPlan:
    plan.layout = "cpu"
    plan.tensor_parallel_size = plan.data_parallel_size = plan.pipeline_parallel_size = 1
    _check_cpu_servable(plan, profile, opts)
    space_gib = opts.cpu_kvcache_space_gib or profile.cpu.kvcache_space_gib
    per_token = 2 * profile.num_layers * profile.num_kv_heads * profile.head_dim * kv_element
    tokens_fit = round_down(space_gib * GIB // per_token, KV_BLOCK_TOKENS)
    plan.kv_cache_bytes_per_token = per_token
    plan.kv_cache_tokens = plan.kv_cache_tokens_per_replica = tokens_fit
    plan.kv_cache_gib_per_gpu = 0.0
    if opts.host_memory_mib:
        _check_host_memory(plan, profile, opts.host_memory_mib, space_gib)
    set_context(plan, profile, opts, tokens_fit, per_token, device="cpu")
    env = {**profile.env, "VLLM_CPU_KVCACHE_SPACE": str(space_gib)}
    return _complete(plan, profile, opts, env, profile.weights_bytes, [], profile.cpu.extra_args)


def _check_cpu_servable(plan: VllmPlan, profile: ModelProfile, opts: Overrides) -> None:
    name = profile.display_name
    if not profile.cpu.servable:
        plan.refuse(
            CPU_NOT_SERVABLE,
            f"this host has no NVIDIA GPU and {name} cannot be served on CPU: {profile.cpu.reason}",
        )
    elif profile.weight_format not in CPU_WEIGHT_FORMATS:
        plan.refuse(
            CPU_NOT_SERVABLE,
            f"this host has no NVIDIA GPU and the CPU build of vLLM cannot load {name}'s "
            f"{profile.weight_format} weights (it loads {', '.join(sorted(CPU_WEIGHT_FORMATS))})",
        )
    elif profile.head_dim not in CPU_HEAD_SIZES:
        plan.refuse(
            CPU_NOT_SERVABLE,
            f"{name} has head size {profile.head_dim}, which vLLM's CPU attention does not support "
            f"({', '.join(str(s) for s in sorted(CPU_HEAD_SIZES))}); serve it on a GPU",
        )
    elif profile.weights_bytes > opts.cpu_max_weights_gib * GIB:
        plan.refuse(
            CPU_NOT_SERVABLE,
            f"this host has no NVIDIA GPU and {name}'s {gib(profile.weights_bytes)} of weights are above "
            f"the CPU limit of {opts.cpu_max_weights_gib:g} GiB; serve it on a GPU, or raise "
            "cpu_max_weights_gib in llmfleet_plan_overrides if slow answers are acceptable",
        )


def _check_host_memory(plan: VllmPlan, profile: ModelProfile, host_memory_mib: int, space_gib: int) -> None:
    need = profile.weights_bytes + space_gib * GIB + int(CPU_HOST_RESERVE_GIB * GIB)
    have = host_memory_mib * MIB
    if need > have:
        plan.refuse(
            INSUFFICIENT_MEMORY,
            f"the host has {gib(have)} of memory but CPU serving needs {gib(need)} (weights "
            f"{gib(profile.weights_bytes)} + KV cache {space_gib} GiB + {CPU_HOST_RESERVE_GIB:g} GiB for "
            f"vLLM itself): {gib(need - have)} missing; lower cpu_kvcache_space_gib in llmfleet_plan_overrides",
        )


# ---- on whole GPUs --------------------------------------------------------------------------------


def _plan_gpu(
    plan: VllmPlan,
    profile: ModelProfile,
    opts: Overrides,
    kv_element: int,
    all_gpus: list[Gpu],
    slices: list[MigSlice],
) -> VllmPlan:
    gpus = _select_gpus(plan, opts, all_gpus)
    if gpus is None or not _describe_gpus(plan, gpus):
        return plan
    _check_capability(plan, profile, gpus)
    overhead = (
        opts.overhead_gib_per_gpu if opts.overhead_gib_per_gpu is not None else profile.overhead_gib_per_gpu
    )
    budget = GpuBudget(plan.gpu_memory_mib, opts.gpu_memory_utilization, overhead, kv_element)
    plan.gpu_memory_utilization = budget.utilization
    plan.overhead_gib_per_gpu = overhead
    if all(g.mig for g in gpus):
        return _plan_mig(plan, profile, opts, budget, gpus, slices)
    layouts = _layouts_for(plan, profile, opts, gpus)
    if not layouts:
        return plan
    chosen = _choose_fit(plan, profile, opts, budget, layouts, gpus)
    if not _memory_fits(plan, profile, opts, budget, chosen, len(gpus)):
        return plan
    if plan.interconnect == "pcie" and chosen.layout.tp > 1:
        plan.warnings.append(
            "the GPUs talk over PCIe only: tensor-parallel traffic crosses PCIe, so expect less throughput "
            "than on NVLink systems"
        )
    env = dict(profile.env)
    if chosen.layout.world_size < len(all_gpus):
        env["CUDA_VISIBLE_DEVICES"] = indices([g.index for g in gpus[: chosen.layout.world_size]])
    bytes_read = chosen.weights_per_gpu * chosen.layout.world_size
    return _complete(plan, profile, opts, env, bytes_read, _parallel_args(chosen.layout))


def _select_gpus(plan: VllmPlan, opts: Overrides, gpus: list[Gpu]) -> list[Gpu] | None:
    """The GPUs to plan on: the requested ones, without MIG-enabled ones when others exist."""
    if opts.gpu_indices is not None:
        by_index = {g.index: g for g in gpus}
        missing = [i for i in opts.gpu_indices if i not in by_index]
        if missing:
            plan.refuse(
                INVALID_INPUT,
                f"gpu_indices in llmfleet_plan_overrides names GPU(s) {indices(missing)}, but this host has GPU(s) "
                f"{indices(sorted(by_index))}",
            )
            return None
        return [by_index[i] for i in opts.gpu_indices]
    whole = [g for g in gpus if not g.mig]
    if whole and len(whole) < len(gpus):
        plan.warnings.append(
            f"GPU(s) {indices([g.index for g in gpus if g.mig])} have MIG enabled and are left out of the plan"
        )
        return whole
    return gpus


def _describe_gpus(plan: VllmPlan, gpus: list[Gpu]) -> bool:
    """Record the GPUs' model and memory; refuse (and say False) mixed models or unknown memory."""
    models: dict[str, list[int]] = {}
    for gpu in gpus:
        models.setdefault(gpu.name, []).append(gpu.index)
    if len(models) > 1:
        detail = "; ".join(f"{len(ix)} x {model} (GPU {indices(ix)})" for model, ix in models.items())
        plan.refuse(
            MIXED_GPUS,
            f"this host mixes GPU models ({detail}); vLLM shards a model evenly, so plan on one model: "
            "set gpu_indices in llmfleet_plan_overrides to the GPUs of one kind",
        )
        return False
    plan.gpu_name = gpus[0].name
    known = [g.memory_mib for g in gpus if g.memory_mib > 0]
    plan.gpu_memory_mib = min(known) if known else 0
    if known and len(known) < len(gpus):
        plan.warnings.append(
            f"the facts give the memory of only {len(known)} of {len(gpus)} GPUs; assuming "
            f"{plan.gpu_memory_mib:,} MiB for all"
        )
    if plan.gpu_memory_mib <= 0 and not all(g.mig for g in gpus):
        plan.refuse(
            INVALID_INPUT,
            f"the GPU facts do not give the memory of the GPUs ({plan.gpu_name}); capture `nvidia-smi -q -x` or "
            "`nvidia-smi --query-gpu=...,memory.total --format=csv` instead",
        )
        return False
    return True


def _check_capability(plan: VllmPlan, profile: ModelProfile, gpus: list[Gpu]) -> None:
    need = parse_capability(profile.min_compute_capability)
    if need is None:
        return
    floor = parse_capability(profile.fallback_compute_capability) or need
    capability = None
    for gpu in gpus:
        have = parse_capability(gpu.compute_capability)
        if have is not None and (capability is None or have < parse_capability(capability)):  # type: ignore[operator]
            capability = gpu.compute_capability
    plan.compute_capability = capability
    if capability is None:
        plan.warnings.append(
            f"the compute capability of {gpus[0].name} is unknown; {profile.display_name} needs "
            f">= {profile.fallback_compute_capability or profile.min_compute_capability}"
        )
        return
    if any(g.capability_source == "name-table" for g in gpus):
        plan.warnings.append(f"compute capability {capability} is inferred from the GPU name {gpus[0].name}")
    have = parse_capability(capability)
    assert have is not None
    if have < floor:
        needs = f"{profile.min_compute_capability}"
        if profile.fallback_compute_capability:
            needs += f", or {profile.fallback_compute_capability} on a slower fallback path"
        plan.refuse(
            COMPUTE_CAPABILITY,
            f"{gpus[0].name} has compute capability {capability}, below what {profile.display_name}'s "
            f"{profile.weight_format} weights need ({needs}); use GPUs with compute capability "
            f"{profile.min_compute_capability} or newer",
        )
    elif have < need:
        plan.warnings.append(
            f"compute capability {capability} is below {profile.min_compute_capability}: "
            f"{profile.compute_capability_note or 'the model runs on a slower fallback path'}"
        )


def _layouts_for(
    plan: VllmPlan, profile: ModelProfile, opts: Overrides, gpus: list[Gpu]
) -> list[ParallelLayout]:
    """The layouts to weigh: the requested one, or those for the GPU count; empty after a refusal."""
    if opts.layout is not None:
        return _requested_layout(plan, profile, opts, opts.layout, len(gpus))
    return candidate_layouts(profile, len(gpus)) or _layouts_on_fewer_gpus(plan, profile, opts, gpus)


def _requested_layout(
    plan: VllmPlan, profile: ModelProfile, opts: Overrides, layout: ParallelLayout, count: int
) -> list[ParallelLayout]:
    problem = layout_problem(profile, layout)
    if problem:
        plan.suggestions.extend(
            f"{c} GPUs: {layout_listing(profile, c)}" for c in supported_gpu_counts(profile)
        )
        plan.refuse(
            UNSUPPORTED_LAYOUT, f"layout {layout.name} is not supported for {profile.display_name}: {problem}"
        )
    elif layout.world_size > count:
        plan.refuse(
            UNSUPPORTED_LAYOUT,
            f"layout {layout.name} needs {layout.world_size} GPUs but the host has {count}",
        )
    elif layout.world_size < count and not opts.allow_gpu_subset:
        plan.refuse(
            UNSUPPORTED_LAYOUT,
            f"layout {layout.name} uses {layout.world_size} of the {count} GPUs; set "
            "allow_gpu_subset: true in llmfleet_plan_overrides to leave the others idle",
        )
    else:
        return [layout]
    return []


def _layouts_on_fewer_gpus(
    plan: VllmPlan, profile: ModelProfile, opts: Overrides, gpus: list[Gpu]
) -> list[ParallelLayout]:
    """No layout uses every GPU: plan on fewer if the user allows it, else refuse."""
    name, count = profile.display_name, len(gpus)
    counts = supported_gpu_counts(profile)
    smaller = [c for c in counts if c < count]
    if smaller and opts.allow_gpu_subset:
        plan.warnings.append(
            f"{name} has no layout for {count} GPUs; planning on {max(smaller)} of them "
            f"(GPU(s) {indices([g.index for g in gpus[max(smaller) :]])} stay idle)"
        )
        return candidate_layouts(profile, max(smaller))
    plan.suggested_gpu_counts = counts
    listing = "; ".join(f"{c} ({layout_listing(profile, c)})" for c in counts)
    reason = f"{name} has no supported layout for {count} {'GPU' if count == 1 else 'GPUs'}; GPU counts that work: {listing}"
    if smaller:
        reason += f"; set allow_gpu_subset: true in llmfleet_plan_overrides to serve on {max(smaller)} of the {count} GPUs"
    plan.refuse(NO_GPU_LAYOUT, reason)
    return []


def _choose_fit(
    plan: VllmPlan,
    profile: ModelProfile,
    opts: Overrides,
    budget: GpuBudget,
    layouts: list[ParallelLayout],
    gpus: list[Gpu],
) -> Fit:
    """The layout that holds the wanted context (else the most tokens); the others as alternatives."""
    fits = [budget.fit(profile, x) for x in layouts]
    target = opts.max_model_len or profile.max_model_len
    full = [f for f in fits if f.tokens_per_replica >= target]
    usable = [f for f in fits if nice_len(f.tokens_per_replica) >= profile.min_model_len]
    if full:
        chosen = full[0]
    elif usable and not opts.max_model_len:
        chosen = max(usable, key=lambda f: f.tokens_per_replica)
    else:
        chosen = max(fits, key=lambda f: (f.weights_fit, f.tokens_per_replica))
    _apply_fit(plan, chosen, gpus[: chosen.layout.world_size])
    plan.alternatives = [_alternative(f, profile, target) for f in fits if f is not chosen and f in usable]
    return chosen


def _memory_fits(
    plan: VllmPlan, profile: ModelProfile, opts: Overrides, budget: GpuBudget, chosen: Fit, count: int
) -> bool:
    """Whether the weights and the context fit; if not, refuse and say what would."""
    if not chosen.weights_fit:
        refuse_weights(plan, profile, budget, chosen, str(plan.gpu_name))
        return False
    if set_context(plan, profile, opts, chosen.tokens_per_replica, chosen.kv_bytes_per_token_per_gpu, "cuda"):
        return True
    target = opts.max_model_len or profile.max_model_len
    wanted = target if CONTEXT_TOO_LONG in plan.reason_codes else profile.min_model_len
    suggest_counts(plan, profile, budget, wanted, count)
    if budget.kv_element == 2:
        plan.suggestions.append(
            "set kv_cache_dtype: fp8 in llmfleet_plan_overrides to halve the KV cache per token"
        )
    return False


def _parallel_args(layout: ParallelLayout) -> list[str]:
    args = ["--tensor-parallel-size", str(layout.tp)]
    if layout.pp > 1:
        args += ["--pipeline-parallel-size", str(layout.pp)]
    if layout.dp > 1:
        args += ["--data-parallel-size", str(layout.dp)]
    if layout.ep:
        args.append("--enable-expert-parallel")
    return args


def _apply_fit(plan: VllmPlan, fit: Fit, used: list[Gpu]) -> None:
    layout = fit.layout
    plan.layout = layout.name
    plan.tensor_parallel_size = layout.tp
    plan.data_parallel_size = layout.dp
    plan.pipeline_parallel_size = layout.pp
    plan.enable_expert_parallel = layout.ep
    plan.gpus_used = layout.world_size
    plan.gpu_indices = [g.index for g in used]
    plan.weights_gib_per_gpu = round(fit.weights_per_gpu / GIB, 2)
    plan.kv_cache_gib_per_gpu = round(max(fit.kv_per_gpu, 0) / GIB, 2)
    plan.kv_cache_bytes_per_token = fit.kv_bytes_per_token_per_gpu * layout.tp * layout.pp
    plan.kv_cache_tokens = fit.total_tokens
    plan.kv_cache_tokens_per_replica = fit.tokens_per_replica


def _alternative(fit: Fit, profile: ModelProfile, target: int) -> dict[str, Any]:
    return {
        "layout": fit.layout.name,
        "tensor_parallel_size": fit.layout.tp,
        "data_parallel_size": fit.layout.dp,
        "pipeline_parallel_size": fit.layout.pp,
        "enable_expert_parallel": fit.layout.ep,
        "gpus": fit.layout.world_size,
        "weights_gib_per_gpu": round(fit.weights_per_gpu / GIB, 2),
        "kv_cache_tokens": fit.total_tokens,
        "max_model_len": min(target, profile.max_model_len, nice_len(fit.tokens_per_replica))
        if fit.tokens_per_replica < target
        else target,
    }


# ---- on a MIG slice -------------------------------------------------------------------------------


def _plan_mig(
    plan: VllmPlan,
    profile: ModelProfile,
    opts: Overrides,
    budget: GpuBudget,
    gpus: list[Gpu],
    slices: list[MigSlice],
) -> VllmPlan:
    largest = _largest_slice(plan, profile, gpus, slices)
    if largest is None:
        return plan
    single = [
        x for x in ([opts.layout] if opts.layout else candidate_layouts(profile, 1)) if x.world_size == 1
    ]
    fit = replace(budget, memory_mib=largest.memory_mib).fit(profile, single[0]) if single else None
    if fit is None or nice_len(fit.tokens_per_replica) < profile.min_model_len:
        _refuse_small_slice(plan, profile, largest, fit, gpus)
        return plan
    plan.gpu_memory_mib = largest.memory_mib
    _apply_fit(plan, fit, [g for g in gpus if g.index == largest.gpu_index][:1] or gpus[:1])
    plan.gpus_used = 1
    set_context(plan, profile, opts, fit.tokens_per_replica, fit.kv_bytes_per_token_per_gpu, "cuda")
    if not plan.reason_codes:
        plan.warnings.append(f"MIG: planned on one slice ({largest.profile}, {largest.memory_mib:,} MiB)")
    env = dict(profile.env)
    if largest.uuid:
        env["CUDA_VISIBLE_DEVICES"] = largest.uuid
    return _complete(plan, profile, opts, env, fit.weights_per_gpu, ["--tensor-parallel-size", "1"])


def _disable_mig(gpus: list[Gpu]) -> str:
    return (
        f"disable MIG (`nvidia-smi -i {indices(sorted(g.index for g in gpus))} -mig 0`, then reset the GPUs) "
        "to plan on whole GPUs"
    )


def _largest_slice(
    plan: VllmPlan, profile: ModelProfile, gpus: list[Gpu], slices: list[MigSlice]
) -> MigSlice | None:
    """The largest MIG slice of the GPUs; None after a refusal (MIG on, but no slice)."""
    gpu_indices = {g.index for g in gpus}
    mine = [s for s in slices if s.gpu_index in gpu_indices or s.gpu_index < 0] or slices
    if mine:
        return max(mine, key=lambda s: s.memory_mib)
    plan.refuse(
        MIG_TOO_SMALL,
        f"MIG is enabled on GPU(s) {indices(sorted(gpu_indices))} but no MIG devices exist; create a MIG "
        f"slice large enough for {profile.display_name}, or {_disable_mig(gpus)}",
    )
    return None


def _refuse_small_slice(
    plan: VllmPlan, profile: ModelProfile, largest: MigSlice, fit: Fit | None, gpus: list[Gpu]
) -> None:
    need = ""
    if fit is not None:
        need = f" needs {gib(fit.weights_per_gpu + fit.overhead_per_gpu)} plus KV cache on one device"
    elif supported_gpu_counts(profile):
        need = f" needs {' or '.join(str(c) for c in supported_gpu_counts(profile))} whole GPUs"
    whole = gpus[0].memory_mib
    plan.refuse(
        MIG_TOO_SMALL,
        f"MIG is enabled and vLLM runs one server on one MIG slice, it cannot shard a model over "
        f"slices: the largest slice has {largest.memory_mib:,} MiB ({largest.profile}) but "
        f"{profile.display_name}{need}; {_disable_mig(gpus)}" + (f" ({whole:,} MiB each)" if whole else ""),
    )


__all__ = ["Gpu", "MigSlice", "VllmPlan", "plan_vllm"]
