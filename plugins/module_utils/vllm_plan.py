# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Plan a vLLM deployment from GPU facts, a model profile and user overrides.

``plan_vllm(facts, profile, overrides, host)`` returns a :class:`Plan`: the parallel layout, the
memory budget (weights per GPU, KV cache bytes per token, KV tokens, ``max_model_len``), the vLLM
argv, the environment and the start timeout; or a refusal (``fits`` false) whose ``reasons`` say
what is wrong and whose ``suggestions`` say what would fit.

The memory model (sizes in GiB = 2**30 bytes; GPU memory as nvidia-smi reports it, in MiB):

    budget per GPU   = memory_total x gpu_memory_utilization
    weights per GPU  = dense weights / (TP x PP) + expert weights / (TP x PP [x DP with EP])
    KV per GPU       = budget - weights per GPU - overhead per GPU
    KV bytes / token = 2 x ceil(layers / PP) x ceil(KV heads / TP) x head size x element bytes
    tokens / replica = KV per GPU / KV bytes per token per GPU      (one replica = TP x PP GPUs)
    KV tokens        = tokens per replica x DP                      (the host's total)

Standard library only: this file may run on target hosts (Python 3.11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import Gpu, read_gpu_facts
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import MigDevice as MigSlice
from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    CPU_HEAD_SIZES,
    CPU_WEIGHT_FORMATS,
    GIB,
    MIB,
    Layout,
    ModelProfile,
    ProfileError,
    ceil_div,
    kv_element_bytes,
    parse_capability,
    parse_version,
    round_down,
)

DEFAULT_GPU_MEMORY_UTILIZATION = 0.90
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_CPU_MAX_WEIGHTS_GIB = 4.0
#: conservative weight-loading rate from local disk to GPUs (MiB/s): 214 GiB loads in ~45 min
DEFAULT_LOAD_RATE_MIB_S = 80.0
#: engine start time besides loading: profiling, torch.compile, CUDA graphs (vLLM's own default)
ENGINE_BASE_TIMEOUT_S = 600
#: what systemd allows beyond the engine timeout (imports, API server, port bind)
START_TIMEOUT_MARGIN_S = 300
#: host memory the CPU build needs besides weights and KV cache (Python, torch, vLLM)
CPU_HOST_RESERVE_GIB = 2.0
#: first vLLM release that accepts --max-model-len auto
MAX_MODEL_LEN_AUTO_MIN_VLLM = (0, 12, 0)
#: vLLM allocates the KV cache in blocks of this many tokens
KV_BLOCK_TOKENS = 16
#: GPU counts tried for suggestions when a profile does not list its layouts
GENERIC_GPU_COUNTS = (1, 2, 4, 8)

# Refusal kinds (Plan.reason_codes); docs/planning.md explains each.
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


class OverrideError(ValueError):
    """A user override is malformed."""


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overrides:
    """What a user may set: the keys of the inventory's ``llmfleet_plan_overrides`` (docs/planning.md)."""

    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None
    max_model_len_auto: bool = False
    max_num_seqs: int | None = None
    layout: Layout | None = None
    allow_gpu_subset: bool = False
    gpu_indices: tuple[int, ...] | None = None
    kv_cache_dtype: str | None = None
    vllm_version: str | None = None
    reasoning_parser: str | None = None
    served_model_name: str | None = None
    overhead_gib_per_gpu: float | None = None
    cpu_kvcache_space_gib: int | None = None
    cpu_max_weights_gib: float = DEFAULT_CPU_MAX_WEIGHTS_GIB
    host_memory_mib: int | None = None
    load_rate_mib_s: float = DEFAULT_LOAD_RATE_MIB_S
    extra_args: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Overrides:
        """Read overrides; ``None`` values mean "not set". Raises OverrideError on bad values."""
        if data is None:
            return cls()
        if isinstance(data, Overrides):
            return data
        if not isinstance(data, dict):
            raise OverrideError(f"overrides must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(k for k, v in data.items() if k not in known and v is not None)
        if unknown:
            raise OverrideError(f"unknown overrides {unknown}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is None or value == "":
                continue
            values[key] = _read_override(key, value)
        return cls(**values)


def _read_override(key: str, value: Any) -> Any:
    def number(low: float, high: float | None = None, whole: bool = False) -> Any:
        try:
            num = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            num = math.nan
        if math.isnan(num) or num < low or (high is not None and num > high) or (whole and num != int(num)):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise OverrideError(f"{key} must be a {'whole ' if whole else ''}number {bound}, got {value!r}")
        return int(num) if whole else num

    def boolean() -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise OverrideError(f"{key} must be true or false, got {value!r}")

    if key == "gpu_memory_utilization":
        util = number(0.05, 0.99)
        return util
    if key == "max_model_len":
        return number(1, whole=True)
    if key in ("max_num_seqs", "host_memory_mib", "cpu_kvcache_space_gib"):
        return number(1, whole=True)
    if key in ("overhead_gib_per_gpu",):
        return number(0)
    if key in ("cpu_max_weights_gib", "load_rate_mib_s"):
        return number(0.001)
    if key in ("max_model_len_auto", "allow_gpu_subset"):
        return boolean()
    if key == "layout":
        try:
            return Layout.parse(value)
        except ProfileError as exc:
            raise OverrideError(str(exc)) from exc
    if key == "gpu_indices":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not items:
            raise OverrideError(
                f"gpu_indices must be a list of GPU indexes such as [0, 1, 2, 3], got {value!r}"
            )
        try:
            indices = tuple(int(str(i).strip()) for i in items)
        except ValueError as exc:
            raise OverrideError(f"gpu_indices must hold whole numbers, got {value!r}") from exc
        if len(set(indices)) != len(indices):
            raise OverrideError(f"gpu_indices lists a GPU twice: {value!r}")
        return indices
    if key == "extra_args":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise OverrideError("extra_args must be a list of strings, one argv element each")
        return tuple(str(a) for a in value)
    if key in ("kv_cache_dtype", "vllm_version", "reasoning_parser", "served_model_name"):
        return str(value).strip()
    raise OverrideError(f"unknown override {key}")  # pragma: no cover - from_dict filters first


def _read_gpus(facts: dict[str, Any]) -> tuple[list[Gpu], list[MigSlice]]:
    """The GPUs and MIG devices of the facts, with names for what the facts leave unnamed."""
    gpus, slices = read_gpu_facts(facts)
    for gpu in gpus:
        gpu.name = (gpu.name or "").strip() or "unknown GPU"
    for mig in slices:
        mig.profile = mig.profile or "MIG slice"
    return gpus, slices


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
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

    def refuse(self, code: str, reason: str) -> Plan:
        self.fits = False
        if code not in self.reason_codes:
            self.reason_codes.append(code)
        self.reasons.append(reason)
        return self

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Fit:
    """The memory budget of one layout on one kind of GPU."""

    layout: Layout
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


def evaluate(
    profile: ModelProfile,
    layout: Layout,
    gpu_memory_mib: int,
    utilization: float,
    overhead_gib: float,
    kv_element: int,
) -> Fit:
    """The memory model for one layout (see the module docstring)."""
    memory = gpu_memory_mib * MIB
    budget = int(memory * utilization)
    dense = profile.weights_bytes - profile.expert_weights_bytes
    expert_shards = layout.tp * layout.pp * (layout.dp if layout.ep else 1)
    weights = ceil_div(dense, layout.tp * layout.pp) + ceil_div(profile.expert_weights_bytes, expert_shards)
    overhead = int(overhead_gib * GIB)
    kv = budget - weights - overhead
    per_token = (
        2
        * ceil_div(profile.num_layers, layout.pp)
        * ceil_div(profile.num_kv_heads, layout.tp)
        * profile.head_dim
        * kv_element
    )
    tokens = round_down(kv // per_token, KV_BLOCK_TOKENS) if kv > 0 else 0
    return Fit(layout, memory, budget, weights, overhead, kv, per_token, tokens)


def layout_problem(profile: ModelProfile, layout: Layout) -> str | None:
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
    block = profile.weight_block_size
    if block and layout.tp > 1:
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


def candidate_layouts(profile: ModelProfile, gpus: int) -> list[Layout]:
    """Valid layouts for exactly ``gpus`` GPUs, in order of preference."""
    if gpus < 1:
        return []
    if profile.layouts:
        return [x for x in profile.layouts if x.world_size == gpus and layout_problem(profile, x) is None]
    found: list[Layout] = []
    for tp in _divisors(gpus):  # fewest GPUs per replica first: more replicas, same context
        for ep in (False, True) if profile.is_moe else (False,):
            layout = Layout(tp=tp, dp=gpus // tp, ep=ep)
            if (not ep or layout.world_size > 1) and layout_problem(profile, layout) is None:
                found.append(layout)
    for tp in reversed(_divisors(gpus)):  # pipeline parallel when tensor parallel alone cannot split
        if tp < gpus:
            layout = Layout(tp=tp, pp=gpus // tp)
            if layout_problem(profile, layout) is None and layout not in found:
                found.append(layout)
    return found


def supported_gpu_counts(profile: ModelProfile, limit: int = 8) -> list[int]:
    counts = sorted({x.world_size for x in profile.layouts}) if profile.layouts else list(GENERIC_GPU_COUNTS)
    return [c for c in counts if (candidate_layouts(profile, c) and (c <= limit or profile.layouts))]


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def _gib(value: float) -> str:
    return f"{value / GIB:,.1f} GiB"


def _tokens(value: int) -> str:
    return f"{value:,}"


def _ranges(indices: list[int]) -> str:
    return ",".join(str(i) for i in indices)


def _nice_len(tokens: int) -> int:
    """Round a memory-bound context down to a multiple of 1024 (vLLM takes any value)."""
    return round_down(tokens, 1024)


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
) -> Plan:
    """Plan vLLM for one host. Never raises on bad input: returns a refusal instead.

    ``discovery_error`` is the message of a failed GPU discovery: the plan is then a refusal that
    carries it, so that everything downstream reports why the host has no plan.
    ``vllm_versions`` maps a device (cuda, cpu) to the vLLM release the runtime installs for it; the
    plan carries the one its device gets and checks it against the model's minimum. The override
    ``vllm_version`` wins over it. ``port`` is carried as it is, for the roles and checks downstream.
    ``nvidia_pci_gpus`` is the number of NVIDIA GPUs the PCI bus shows: with no GPU in the facts, the
    driver is missing.
    """
    plan = Plan(host=host, model=profile.name, port=port)
    plan.weights_gib = round(profile.weights_gib, 2)
    plan.served_model_name = profile.served_model_name
    plan.tool_call_parser = profile.tool_call_parser
    plan.reasoning_parser = profile.reasoning_parser
    plan.trust_remote_code = profile.trust_remote_code
    plan.sampling = dict(profile.sampling)
    try:
        opts = Overrides.from_dict(overrides)  # type: ignore[arg-type]
    except OverrideError as exc:
        return plan.refuse(INVALID_INPUT, f"invalid setting: {exc}")
    if opts.served_model_name:
        plan.served_model_name = opts.served_model_name
    if opts.reasoning_parser:
        if opts.reasoning_parser not in profile.reasoning_parsers:
            return plan.refuse(
                INVALID_INPUT,
                f"reasoning parser {opts.reasoning_parser!r} is not one {profile.display_name} supports "
                f"({', '.join(profile.reasoning_parsers) or 'none'})",
            )
        plan.reasoning_parser = opts.reasoning_parser
    kv_dtype = opts.kv_cache_dtype or profile.kv_cache_dtype
    try:
        kv_element = kv_element_bytes(kv_dtype, profile.dtype)
    except ProfileError as exc:
        return plan.refuse(INVALID_INPUT, f"invalid setting: {exc}")
    plan.kv_cache_dtype = kv_dtype
    plan.requested_max_model_len = opts.max_model_len
    if opts.max_model_len and opts.max_model_len > profile.max_model_len:
        return plan.refuse(
            CONTEXT_TOO_LONG,
            f"the requested max context {_tokens(opts.max_model_len)} exceeds {profile.display_name}'s maximum "
            f"of {_tokens(profile.max_model_len)} tokens; ask for {_tokens(profile.max_model_len)} or less",
        )
    if discovery_error:
        return plan.refuse(GPU_DISCOVERY, f"GPU discovery failed: {discovery_error}")
    if not isinstance(facts, dict):
        return plan.refuse(
            INVALID_INPUT,
            "no GPU facts for this host: run the llmfleet.serve.gpu_facts module (or give a capture "
            "with llmfleet_gpu_capture) before planning",
        )
    try:
        gpus, slices = _read_gpus(facts)
    except (OverrideError, TypeError, ValueError) as exc:
        return plan.refuse(INVALID_INPUT, f"unreadable GPU facts: {exc}")
    plan.interconnect = facts.get("interconnect")
    plan.gpu_count = len(gpus)
    if not gpus and nvidia_pci_gpus > 0:
        return plan.refuse(
            NO_DRIVER,
            f"{nvidia_pci_gpus} NVIDIA GPU(s) on the PCI bus but no NVIDIA driver answers: install it with "
            "the llmfleet.serve.nvidia_driver role (site.yml does that before it plans), then plan again",
        )
    plan.device = "cuda" if gpus else "cpu"
    _check_vllm_version(plan, profile, opts.vllm_version or (vllm_versions or {}).get(plan.device))
    if not gpus:
        return _plan_cpu(plan, profile, opts, kv_element)
    return _plan_gpu(plan, profile, opts, kv_element, gpus, slices)


def _check_vllm_version(plan: Plan, profile: ModelProfile, version: str | None) -> None:
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


def _plan_cpu(plan: Plan, profile: ModelProfile, opts: Overrides, kv_element: int) -> Plan:
    plan.layout = "cpu"
    plan.tensor_parallel_size = plan.data_parallel_size = plan.pipeline_parallel_size = 1
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
            f"this host has no NVIDIA GPU and {name}'s {_gib(profile.weights_bytes)} of weights are above "
            f"the CPU limit of {opts.cpu_max_weights_gib:g} GiB; serve it on a GPU, or raise "
            "cpu_max_weights_gib in llmfleet_plan_overrides if slow answers are acceptable",
        )
    space_gib = opts.cpu_kvcache_space_gib or profile.cpu.kvcache_space_gib
    per_token = 2 * profile.num_layers * profile.num_kv_heads * profile.head_dim * kv_element
    tokens = round_down(space_gib * GIB // per_token, KV_BLOCK_TOKENS)
    plan.kv_cache_bytes_per_token = per_token
    plan.kv_cache_tokens = plan.kv_cache_tokens_per_replica = tokens
    plan.kv_cache_gib_per_gpu = 0.0
    if opts.host_memory_mib:
        need = profile.weights_bytes + space_gib * GIB + int(CPU_HOST_RESERVE_GIB * GIB)
        have = opts.host_memory_mib * MIB
        if need > have:
            plan.refuse(
                INSUFFICIENT_MEMORY,
                f"the host has {_gib(have)} of memory but CPU serving needs {_gib(need)} (weights "
                f"{_gib(profile.weights_bytes)} + KV cache {space_gib} GiB + {CPU_HOST_RESERVE_GIB:g} GiB for "
                f"vLLM itself): {_gib(need - have)} missing; lower cpu_kvcache_space_gib in llmfleet_plan_overrides",
            )
    _set_context(plan, profile, opts, tokens, per_token, device="cpu")
    if plan.reason_codes:
        return plan
    plan.fits = True
    plan.max_num_seqs = opts.max_num_seqs or profile.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    plan.env = {**profile.env, "VLLM_CPU_KVCACHE_SPACE": str(space_gib)}
    _finish(plan, profile, opts, bytes_read=profile.weights_bytes, extra=profile.cpu.extra_args)
    return plan


def _set_context(
    plan: Plan, profile: ModelProfile, opts: Overrides, tokens: int, per_token: int, device: str
) -> bool:
    """max_model_len from the model's maximum, the request and what fits; refuse if it cannot."""
    target = opts.max_model_len or profile.max_model_len
    if tokens >= target:
        plan.max_model_len = target
        plan.context_fits = True
        return True
    fitting = _nice_len(tokens)
    plan.suggested_max_model_len = fitting if fitting >= profile.min_model_len else None
    if opts.max_model_len:
        missing = (target - tokens) * per_token
        where = "per replica" if device == "cuda" else "in VLLM_CPU_KVCACHE_SPACE"
        reason = (
            f"the requested max context {_tokens(target)} tokens needs {_gib(target * per_token)} of KV cache "
            f"{where}, but only {_gib(tokens * per_token)} is free ({_tokens(tokens)} tokens): "
            f"{_gib(missing)} missing"
        )
        if plan.suggested_max_model_len:
            reason += f"; a max context of {_tokens(plan.suggested_max_model_len)} would fit"
            plan.suggestions.append(
                f"set max_model_len: {plan.suggested_max_model_len} in llmfleet_plan_overrides"
            )
        if device == "cpu":
            need_gib = math.ceil(target * per_token / GIB)
            plan.suggestions.append(f"set cpu_kvcache_space_gib: {need_gib} in llmfleet_plan_overrides")
        plan.refuse(CONTEXT_TOO_LONG, reason)
        plan.max_model_len = 0
        return False
    if fitting < profile.min_model_len:
        plan.refuse(
            INSUFFICIENT_MEMORY,
            f"only {_tokens(tokens)} tokens of KV cache fit, below the minimum useful context of "
            f"{_tokens(profile.min_model_len)} tokens for {profile.display_name}",
        )
        return False
    plan.max_model_len = fitting
    plan.context_fits = True
    plan.warnings.append(
        f"max context limited by memory to {_tokens(fitting)} tokens "
        f"({profile.display_name} supports {_tokens(profile.max_model_len)})"
    )
    return True


def _select_gpus(plan: Plan, profile: ModelProfile, opts: Overrides, gpus: list[Gpu]) -> list[Gpu] | None:
    """The GPUs to plan on: the requested ones, without MIG-enabled ones when others exist."""
    if opts.gpu_indices is not None:
        by_index = {g.index: g for g in gpus}
        missing = [i for i in opts.gpu_indices if i not in by_index]
        if missing:
            plan.refuse(
                INVALID_INPUT,
                f"gpu_indices in llmfleet_plan_overrides names GPU(s) {_ranges(missing)}, but this host has GPU(s) "
                f"{_ranges(sorted(by_index))}",
            )
            return None
        return [by_index[i] for i in opts.gpu_indices]
    whole = [g for g in gpus if not g.mig]
    if whole and len(whole) < len(gpus):
        plan.warnings.append(
            f"GPU(s) {_ranges([g.index for g in gpus if g.mig])} have MIG enabled and are left out of the plan"
        )
        return whole
    return gpus


def _plan_gpu(
    plan: Plan,
    profile: ModelProfile,
    opts: Overrides,
    kv_element: int,
    all_gpus: list[Gpu],
    slices: list[MigSlice],
) -> Plan:
    name = profile.display_name
    gpus = _select_gpus(plan, profile, opts, all_gpus)
    if gpus is None:
        return plan
    models = {}
    for gpu in gpus:
        models.setdefault(gpu.name, []).append(gpu.index)
    if len(models) > 1:
        detail = "; ".join(f"{len(ix)} x {model} (GPU {_ranges(ix)})" for model, ix in models.items())
        return plan.refuse(
            MIXED_GPUS,
            f"this host mixes GPU models ({detail}); vLLM shards a model evenly, so plan on one model: "
            "set gpu_indices in llmfleet_plan_overrides to the GPUs of one kind",
        )
    gpu_name = gpus[0].name
    plan.gpu_name = gpu_name
    known = [g.memory_mib for g in gpus if g.memory_mib > 0]
    memory_mib = min(known) if known else 0
    if known and len(known) < len(gpus):
        plan.warnings.append(
            f"the facts give the memory of only {len(known)} of {len(gpus)} GPUs; assuming "
            f"{memory_mib:,} MiB for all"
        )
    plan.gpu_memory_mib = memory_mib
    if memory_mib <= 0 and not all(g.mig for g in gpus):
        return plan.refuse(
            INVALID_INPUT,
            f"the GPU facts do not give the memory of the GPUs ({gpu_name}); capture `nvidia-smi -q -x` or "
            "`nvidia-smi --query-gpu=...,memory.total --format=csv` instead",
        )

    _check_capability(plan, profile, gpus)

    utilization = opts.gpu_memory_utilization
    overhead = (
        opts.overhead_gib_per_gpu if opts.overhead_gib_per_gpu is not None else profile.overhead_gib_per_gpu
    )
    plan.gpu_memory_utilization = utilization
    plan.overhead_gib_per_gpu = overhead

    if all(g.mig for g in gpus):
        return _plan_mig(plan, profile, opts, kv_element, gpus, slices, utilization, overhead)

    count = len(gpus)
    if opts.layout is not None:
        layout = opts.layout
        problem = layout_problem(profile, layout)
        if problem:
            plan.suggestions.extend(
                f"{c} GPUs: {', '.join(x.name for x in candidate_layouts(profile, c))}"
                for c in supported_gpu_counts(profile)
            )
            return plan.refuse(
                UNSUPPORTED_LAYOUT, f"layout {layout.name} is not supported for {name}: {problem}"
            )
        if layout.world_size > count:
            return plan.refuse(
                UNSUPPORTED_LAYOUT,
                f"layout {layout.name} needs {layout.world_size} GPUs but the host has {count}",
            )
        if layout.world_size < count and not opts.allow_gpu_subset:
            return plan.refuse(
                UNSUPPORTED_LAYOUT,
                f"layout {layout.name} uses {layout.world_size} of the {count} GPUs; set "
                "allow_gpu_subset: true in llmfleet_plan_overrides to leave the others idle",
            )
        candidates = [layout]
    else:
        candidates = candidate_layouts(profile, count)
        if not candidates:
            counts = supported_gpu_counts(profile)
            smaller = [c for c in counts if c < count]
            listing = "; ".join(
                f"{c} ({', '.join(x.name for x in candidate_layouts(profile, c))})" for c in counts
            )
            if smaller and opts.allow_gpu_subset:
                candidates = candidate_layouts(profile, max(smaller))
                plan.warnings.append(
                    f"{name} has no layout for {count} GPUs; planning on {max(smaller)} of them "
                    f"(GPU(s) {_ranges([g.index for g in gpus[max(smaller) :]])} stay idle)"
                )
            else:
                plan.suggested_gpu_counts = counts
                gpus_word = "GPU" if count == 1 else "GPUs"
                reason = (
                    f"{name} has no supported layout for {count} {gpus_word}; GPU counts that work: {listing}"
                )
                if smaller:
                    reason += f"; set allow_gpu_subset: true in llmfleet_plan_overrides to serve on {max(smaller)} of the {count} GPUs"
                return plan.refuse(NO_GPU_LAYOUT, reason)

    fits = [evaluate(profile, x, memory_mib, utilization, overhead, kv_element) for x in candidates]
    target = opts.max_model_len or profile.max_model_len
    full = [f for f in fits if f.tokens_per_replica >= target]
    usable = [f for f in fits if _nice_len(f.tokens_per_replica) >= profile.min_model_len]
    if full:
        chosen = full[0]
    elif usable and not opts.max_model_len:
        chosen = max(usable, key=lambda f: f.tokens_per_replica)
    else:
        chosen = max(fits, key=lambda f: (f.weights_fit, f.tokens_per_replica))

    used = gpus[: chosen.layout.world_size]
    _apply_fit(plan, profile, chosen, used)
    plan.alternatives = [_alternative(f, profile, target) for f in fits if f is not chosen and f in usable]

    if not chosen.weights_fit:
        _refuse_weights(plan, profile, chosen, gpu_name, memory_mib, utilization, overhead, kv_element)
        return plan
    if not _set_context(
        plan, profile, opts, chosen.tokens_per_replica, chosen.kv_bytes_per_token_per_gpu, "cuda"
    ):
        wanted = target if CONTEXT_TOO_LONG in plan.reason_codes else profile.min_model_len
        _suggest_counts(plan, profile, memory_mib, utilization, overhead, kv_element, wanted, count)
        if kv_element == 2:
            plan.suggestions.append(
                "set kv_cache_dtype: fp8 in llmfleet_plan_overrides to halve the KV cache per token"
            )
        return plan

    if plan.interconnect == "pcie" and chosen.layout.tp > 1:
        plan.warnings.append(
            "the GPUs talk over PCIe only: tensor-parallel traffic crosses PCIe, so expect less throughput "
            "than on NVLink systems"
        )
    if plan.reason_codes:  # refused earlier: compute capability, vLLM version
        return plan
    plan.fits = True
    plan.max_num_seqs = opts.max_num_seqs or profile.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    env = dict(profile.env)
    if len(used) < len(all_gpus):
        env["CUDA_VISIBLE_DEVICES"] = _ranges([g.index for g in used])
    plan.env = env
    gpu_args = [
        "--tensor-parallel-size",
        str(chosen.layout.tp),
    ]
    if chosen.layout.pp > 1:
        gpu_args += ["--pipeline-parallel-size", str(chosen.layout.pp)]
    if chosen.layout.dp > 1:
        gpu_args += ["--data-parallel-size", str(chosen.layout.dp)]
    if chosen.layout.ep:
        gpu_args.append("--enable-expert-parallel")
    _finish(
        plan,
        profile,
        opts,
        bytes_read=chosen.weights_per_gpu * chosen.layout.world_size,
        gpu_args=gpu_args,
        extra=(),
    )
    return plan


def _apply_fit(plan: Plan, profile: ModelProfile, fit: Fit, used: list[Gpu]) -> None:
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
        "max_model_len": min(target, profile.max_model_len, _nice_len(fit.tokens_per_replica))
        if fit.tokens_per_replica < target
        else target,
    }


def _check_capability(plan: Plan, profile: ModelProfile, gpus: list[Gpu]) -> None:
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


def _plan_mig(
    plan: Plan,
    profile: ModelProfile,
    opts: Overrides,
    kv_element: int,
    gpus: list[Gpu],
    slices: list[MigSlice],
    utilization: float,
    overhead: float,
) -> Plan:
    name = profile.display_name
    indices = {g.index for g in gpus}
    mine = [s for s in slices if s.gpu_index in indices or s.gpu_index < 0] or slices
    disable = f"disable MIG (`nvidia-smi -i {_ranges(sorted(indices))} -mig 0`, then reset the GPUs) to plan on whole GPUs"
    if not mine:
        return plan.refuse(
            MIG_TOO_SMALL,
            f"MIG is enabled on GPU(s) {_ranges(sorted(indices))} but no MIG devices exist; create a MIG "
            f"slice large enough for {name}, or {disable}",
        )
    largest = max(mine, key=lambda s: s.memory_mib)
    single = [
        x for x in ([opts.layout] if opts.layout else candidate_layouts(profile, 1)) if x.world_size == 1
    ]
    fit = (
        evaluate(profile, single[0], largest.memory_mib, utilization, overhead, kv_element)
        if single
        else None
    )
    if fit is None or _nice_len(fit.tokens_per_replica) < profile.min_model_len:
        whole = gpus[0].memory_mib
        counts = supported_gpu_counts(profile)
        need = ""
        if fit is not None:
            need = f" needs {_gib(fit.weights_per_gpu + fit.overhead_per_gpu)} plus KV cache on one device"
        elif counts:
            need = f" needs {' or '.join(str(c) for c in counts)} whole GPUs"
        return plan.refuse(
            MIG_TOO_SMALL,
            f"MIG is enabled and vLLM runs one server on one MIG slice, it cannot shard a model over "
            f"slices: the largest slice has {largest.memory_mib:,} MiB ({largest.profile}) but {name}{need}; "
            f"{disable}" + (f" ({whole:,} MiB each)" if whole else ""),
        )
    plan.gpu_memory_mib = largest.memory_mib
    _apply_fit(plan, profile, fit, [g for g in gpus if g.index == largest.gpu_index][:1] or gpus[:1])
    plan.gpus_used = 1
    if not _set_context(plan, profile, opts, fit.tokens_per_replica, fit.kv_bytes_per_token_per_gpu, "cuda"):
        return plan
    if plan.reason_codes:
        return plan
    plan.warnings.append(f"MIG: planned on one slice ({largest.profile}, {largest.memory_mib:,} MiB)")
    plan.fits = True
    plan.max_num_seqs = opts.max_num_seqs or profile.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    plan.env = dict(profile.env)
    if largest.uuid:
        plan.env["CUDA_VISIBLE_DEVICES"] = largest.uuid
    _finish(
        plan,
        profile,
        opts,
        bytes_read=fit.weights_per_gpu,
        gpu_args=["--tensor-parallel-size", "1"],
        extra=(),
    )
    return plan


def _refuse_weights(
    plan: Plan,
    profile: ModelProfile,
    fit: Fit,
    gpu_name: str,
    memory_mib: int,
    utilization: float,
    overhead: float,
    kv_element: int,
) -> None:
    layout = fit.layout
    missing = -fit.kv_per_gpu
    plan.refuse(
        INSUFFICIENT_MEMORY,
        f"{profile.display_name} does not fit on {layout.world_size} x {gpu_name} "
        f"({_gib(fit.gpu_memory_bytes)} each): layout {layout.name} needs {_gib(fit.weights_per_gpu)} of weights "
        f"+ {overhead:g} GiB reserve per GPU, but {utilization:.0%} of the GPU is {_gib(fit.budget_per_gpu)}; "
        f"{_gib(missing)} per GPU ({_gib(missing * layout.world_size)} in all) is missing, before any KV cache",
    )
    _suggest_counts(plan, profile, memory_mib, utilization, overhead, kv_element, profile.min_model_len, 0)
    needed = (
        fit.weights_per_gpu + fit.overhead_per_gpu + profile.min_model_len * fit.kv_bytes_per_token_per_gpu
    )
    higher = needed / fit.gpu_memory_bytes
    if higher <= 0.95 and higher > utilization:
        plan.suggestions.append(
            f"set gpu_memory_utilization: {math.ceil(higher * 100) / 100:.2f} in llmfleet_plan_overrides"
        )


def _suggest_counts(
    plan: Plan,
    profile: ModelProfile,
    memory_mib: int,
    utilization: float,
    overhead: float,
    kv_element: int,
    target: int,
    current: int,
) -> None:
    """Name the GPU counts of the same kind that would fit ``target`` tokens per replica."""
    if COMPUTE_CAPABILITY in plan.reason_codes:  # more GPUs of a kind that cannot run it won't help
        return
    for count in supported_gpu_counts(profile, limit=16):
        if count == current:
            continue
        for layout in candidate_layouts(profile, count):
            fit = evaluate(profile, layout, memory_mib, utilization, overhead, kv_element)
            if fit.tokens_per_replica >= target:
                plan.suggested_gpu_counts.append(count)
                context = min(profile.max_model_len, _nice_len(fit.tokens_per_replica))
                plan.suggestions.append(
                    f"{count} GPUs of this kind would fit ({layout.name}: {_tokens(fit.total_tokens)} tokens "
                    f"of KV cache, max context {_tokens(context)})"
                )
                break


def engine_timeout_s(bytes_read: int, rate_mib_s: float) -> int:
    """VLLM_ENGINE_READY_TIMEOUT_S: vLLM's default plus loading at a conservative rate, in minutes."""
    seconds = ENGINE_BASE_TIMEOUT_S + bytes_read / (rate_mib_s * MIB)
    return int(math.ceil(seconds / 60) * 60)


def _finish(
    plan: Plan,
    profile: ModelProfile,
    opts: Overrides,
    bytes_read: int,
    gpu_args: list[str] | None = None,
    extra: tuple[str, ...] = (),
) -> None:
    """argv, environment and timeouts of a plan that fits."""
    max_len_arg = str(plan.max_model_len)
    if opts.max_model_len_auto:
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
                f"{_tokens(opts.max_model_len)} tokens"
            )
        else:
            max_len_arg = "auto"
    plan.max_model_len_arg = max_len_arg
    args = ["--served-model-name", plan.served_model_name or profile.served_model_name]
    args += gpu_args or []
    args += ["--max-model-len", max_len_arg]
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


def plan_many(
    hosts: dict[str, dict[str, Any]], profile: ModelProfile, overrides: dict[str, Any] | None = None
) -> list[Plan]:
    """Plan every host of a {host: facts} mapping (used by the benchmark and tests)."""
    opts = Overrides.from_dict(overrides)
    return [plan_vllm(facts, profile, opts, host=host) for host, facts in hosts.items()]


__all__ = [
    "PLANNED_FLAGS",
    "REFUSAL_KINDS",
    "Fit",
    "OverrideError",
    "Overrides",
    "Plan",
    "candidate_layouts",
    "engine_timeout_s",
    "evaluate",
    "layout_problem",
    "plan_many",
    "plan_vllm",
    "supported_gpu_counts",
]
