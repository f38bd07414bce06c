# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Model profiles: validate them, derive what config.json can say, and normalise them.

A profile is data (a YAML file under the collection's ``models/`` directory, or a dict from the
inventory). This module turns such a dict into a :class:`ModelProfile`:

* layers, attention heads, KV heads, head size, maximum context, weight format and MoE shape are
  derived from the ``config`` block (the model's ``config.json``, or the fields of it the planner
  needs), unless the profile states them itself;
* hand-written numbers are kept for what ``config.json`` cannot say: the weights' size as loaded
  (when the parameter-count estimate is not good enough), the layouts the model supports and
  refuses, parsers, sampling, the minimum vLLM version and compute capability, CPU support.

Standard library and ansible.module_utils only: this file may run on target hosts (Python 3.11).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.data_spec import (
    DataSpec,
    check_mapping,
    exact_bool,
    exact_number,
    exact_whole_number,
    mapping,
    sequence,
    text,
)

GIB = 1024**3
MIB = 1024**2
GB = 1000**3

#: bytes per element of the dtypes found in config.json and in --kv-cache-dtype
DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "float8_e4m3fn": 1,
}

#: weight formats the CPU build of vLLM can load
CPU_WEIGHT_FORMATS = frozenset({"float32", "bfloat16", "float16"})

#: head sizes the CPU attention backend supports (others make the engine die on the first request)
CPU_HEAD_SIZES = frozenset({32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512})

DEFAULT_OVERHEAD_GIB_PER_GPU = 4.0
DEFAULT_MIN_MODEL_LEN = 4096
DEFAULT_CPU_KVCACHE_SPACE_GIB = 1

_LAYOUT_PART = re.compile(r"^(tp|dp|pp)(\d+)$")


class ProfileError(ValueError):
    """A profile is malformed; the message names the profile and the field."""


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ParallelLayout:
    """A parallel layout on one host: tensor x data x pipeline parallel, with or without EP."""

    tp: int = 1
    dp: int = 1
    pp: int = 1
    ep: bool = False

    @property
    def world_size(self) -> int:
        return self.tp * self.dp * self.pp

    @property
    def name(self) -> str:
        if self.tp == 1 and self.pp == 1 and self.dp > 1:  # data parallel only: dp8, dp8-ep
            return f"dp{self.dp}" + ("-ep" if self.ep else "")
        parts = [f"tp{self.tp}"]
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        if self.ep:
            parts.append("ep")
        if self.dp > 1:
            parts.append(f"dp{self.dp}")
        return "-".join(parts)

    @classmethod
    def parse(cls, value: Any) -> ParallelLayout:
        """Read ``tp8-ep``, ``tp4-ep-dp2``, ``dp8-ep``, ``tp2-pp2``, or a dict {tp, dp, pp, ep}."""
        if isinstance(value, ParallelLayout):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"tp", "dp", "pp", "ep", "name", "layout"}
            if unknown:
                raise ProfileError(f"layout {value!r}: unknown keys {sorted(unknown)}")
            if "layout" in value or "name" in value:
                return cls.parse(value.get("layout", value.get("name")))
            try:
                layout = cls(
                    tp=int(value.get("tp", 1)),
                    dp=int(value.get("dp", 1)),
                    pp=int(value.get("pp", 1)),
                    ep=bool(value.get("ep", False)),
                )
            except (TypeError, ValueError) as exc:
                raise ProfileError(f"layout {value!r}: {exc}") from exc
            layout.check()
            return layout
        if not isinstance(value, str) or not value.strip():
            raise ProfileError(f"layout {value!r}: expected a name such as 'tp8-ep' or 'tp4-ep-dp2'")
        sizes = {"tp": 1, "dp": 1, "pp": 1}
        seen: set[str] = set()
        ep = False
        for part in value.strip().lower().replace("_", "-").replace("+", "-").split("-"):
            if part == "ep":
                ep = True
                continue
            match = _LAYOUT_PART.match(part)
            if not match or match.group(1) in seen:
                raise ProfileError(
                    f"layout {value!r}: cannot read {part!r}; write it as tpN, dpN, ppN and ep "
                    "joined by '-', e.g. 'tp8-ep' or 'tp4-ep-dp2'"
                )
            seen.add(match.group(1))
            sizes[match.group(1)] = int(match.group(2))
        layout = cls(tp=sizes["tp"], dp=sizes["dp"], pp=sizes["pp"], ep=ep)
        layout.check()
        return layout

    def __str__(self) -> str:
        return self.name

    def check(self) -> None:
        if min(self.tp, self.dp, self.pp) < 1:
            raise ProfileError(f"layout {self.name}: every size must be at least 1")


@dataclass(frozen=True)
class RefusedLayout:
    layout: ParallelLayout
    reason: str


@dataclass(frozen=True)
class CpuSupport:
    servable: bool
    reason: str = ""
    kvcache_space_gib: int = DEFAULT_CPU_KVCACHE_SPACE_GIB
    extra_args: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Derivation from config.json
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigShape:
    """What the planner can learn from a model's config.json."""

    num_layers: int | None = None
    num_attention_heads: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    moe_intermediate_size: int | None = None
    num_experts: int | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    weight_format: str | None = None
    weight_block_size: int | None = None
    weights_bytes: int | None = None
    expert_weights_bytes: int | None = None


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs keep the language model's numbers under text_config."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and "num_hidden_layers" in inner:
        merged = dict(config)
        merged.update(inner)
        return merged
    return config


def _int_or_none(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return None


def derive_from_config(config: dict[str, Any]) -> ConfigShape:
    """Derive layers, heads, KV heads, head size, context, format and weights from config.json.

    Unknown or missing fields stay ``None``; the caller decides whether the profile supplies them.
    """
    if not isinstance(config, dict):
        raise ProfileError(f"config must be a mapping (the model's config.json), got {type(config).__name__}")
    cfg = _text_config(config)
    layers = _int_or_none(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int_or_none(cfg, "num_attention_heads", "n_head")
    kv_heads = _int_or_none(cfg, "num_key_value_heads", "num_kv_heads", "multi_query_group_num") or heads
    hidden = _int_or_none(cfg, "hidden_size", "n_embd", "d_model")
    head_dim = _int_or_none(cfg, "head_dim")
    if head_dim is None and hidden and heads and hidden % heads == 0:
        head_dim = hidden // heads
    experts = _int_or_none(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    intermediate = _int_or_none(cfg, "intermediate_size", "ffn_hidden_size")
    moe_intermediate = _int_or_none(cfg, "moe_intermediate_size") if experts else None
    if experts and moe_intermediate is None:
        moe_intermediate = intermediate
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    dtype = str(dtype).lower() if dtype else None
    weight_format, block = _weight_format(cfg, dtype)
    shape = ConfigShape(
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=intermediate,
        moe_intermediate_size=moe_intermediate,
        num_experts=experts,
        max_model_len=_int_or_none(cfg, "max_position_embeddings", "n_positions", "max_sequence_length"),
        dtype=dtype,
        weight_format=weight_format,
        weight_block_size=block,
    )
    weights, expert_weights = _estimate_weights(cfg, shape)
    return replace(shape, weights_bytes=weights, expert_weights_bytes=expert_weights)


def _weight_format(cfg: dict[str, Any], dtype: str | None) -> tuple[str | None, int | None]:
    """The weights' format (the dtype, or the quantisation method) and its block size, if any."""
    quant = cfg.get("quantization_config")
    if not isinstance(quant, dict):
        return dtype, None
    weight_format = dtype
    method = str(quant.get("quant_method", "")).lower()
    fmt = str(quant.get("fmt", "")).lower()
    if method == "fp8" or "float8" in fmt or "fp8" in fmt:
        weight_format = "fp8"
    elif method:
        weight_format = method
    block_size = quant.get("weight_block_size")
    if isinstance(block_size, list | tuple) and block_size:
        return weight_format, int(block_size[-1])
    return weight_format, None


def _estimate_weights(cfg: dict[str, Any], shape: ConfigShape) -> tuple[int | None, int | None]:
    """Estimate the loaded weights of a standard decoder (GQA attention, gated MLP or MoE).

    Returns (total bytes, bytes in routed experts). Linear layers use the weight format; embeddings,
    norms and the router stay in the model dtype. ``None`` when the config lacks a needed number.
    """
    layers, heads, kv_heads = shape.num_layers, shape.num_attention_heads, shape.num_kv_heads
    head_dim, hidden, dtype = shape.head_dim, shape.hidden_size, shape.dtype
    experts, intermediate, moe_intermediate = (
        shape.num_experts,
        shape.intermediate_size,
        shape.moe_intermediate_size,
    )
    vocab = _int_or_none(cfg, "vocab_size")
    if not all((layers, heads, kv_heads, head_dim, hidden, vocab, dtype)) or dtype not in DTYPE_BYTES:
        return None, None
    assert layers and heads and kv_heads and head_dim and hidden and vocab and dtype  # for type checkers
    dense_bytes = DTYPE_BYTES[dtype]
    linear_bytes = DTYPE_BYTES.get(shape.weight_format or dtype, dense_bytes)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    norms = layers * 2 * hidden + hidden
    expert_params = 0
    router = 0
    mlp = 0
    if experts:
        if not moe_intermediate:
            return None, None
        expert_params = layers * experts * 3 * hidden * moe_intermediate
        router = layers * hidden * experts
        shared = _int_or_none(cfg, "shared_expert_intermediate_size")
        if shared:
            mlp = layers * 3 * hidden * shared
    else:
        if not intermediate:
            return None, None
        mlp = layers * 3 * hidden * intermediate
    linear = layers * attention + mlp
    total = (linear + expert_params) * linear_bytes + (embeddings + norms + router) * dense_bytes
    return int(total), int(expert_params * linear_bytes)


# --------------------------------------------------------------------------------------------
# The profile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelProfile:
    """A validated, normalised model profile (all sizes in bytes, all numbers resolved)."""

    name: str
    display_name: str
    model_id: str
    served_model_name: str
    modelscope_id: str | None
    huggingface_id: str | None
    trust_remote_code: bool
    architecture: str
    weight_format: str
    weight_block_size: int | None
    dtype: str
    weights_bytes: int
    expert_weights_bytes: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int | None
    intermediate_size: int | None
    moe_intermediate_size: int | None
    num_experts: int | None
    kv_cache_dtype: str
    max_model_len: int
    min_model_len: int
    layouts: tuple[ParallelLayout, ...]
    refused_layouts: tuple[RefusedLayout, ...]
    tool_call_parser: str | None
    reasoning_parser: str | None
    reasoning_parsers: tuple[str, ...]
    sampling: dict[str, Any]
    min_vllm_version: str | None
    min_compute_capability: str | None
    fallback_compute_capability: str | None
    compute_capability_note: str
    overhead_gib_per_gpu: float
    max_num_seqs: int | None
    extra_args: tuple[str, ...]
    env: dict[str, str]
    cpu: CpuSupport
    config: dict[str, Any] = field(default_factory=dict)
    derived_from_config: tuple[str, ...] = ()
    notes: str = ""
    source: str = ""

    # ---- derived figures -------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.architecture == "moe"

    @property
    def weights_gib(self) -> float:
        return self.weights_bytes / GIB

    @property
    def kv_element_bytes(self) -> int:
        return kv_element_bytes(self.kv_cache_dtype, self.dtype)

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (K and V) x layers x KV heads x head size x bytes per element, for the whole model."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.kv_element_bytes

    def refused_reason(self, layout: ParallelLayout) -> str | None:
        for refused in self.refused_layouts:
            if refused.layout == layout:
                return refused.reason
        return None

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (what the ``model_profile`` filter returns; accepted back by from_dict)."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "model_id": self.model_id,
            "served_model_name": self.served_model_name,
            "modelscope_id": self.modelscope_id,
            "huggingface_id": self.huggingface_id,
            "trust_remote_code": self.trust_remote_code,
            "architecture": self.architecture,
            "weight_format": self.weight_format,
            "weight_block_size": self.weight_block_size,
            "dtype": self.dtype,
            "weights_bytes": self.weights_bytes,
            "weights_gib": round(self.weights_gib, 3),
            "expert_weights_bytes": self.expert_weights_bytes,
            "num_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "moe_intermediate_size": self.moe_intermediate_size,
            "num_experts": self.num_experts,
            "kv_cache_dtype": self.kv_cache_dtype,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "max_model_len": self.max_model_len,
            "min_model_len": self.min_model_len,
            "layouts": [layout.name for layout in self.layouts],
            "refused_layouts": [{"layout": r.layout.name, "reason": r.reason} for r in self.refused_layouts],
            "tool_call_parser": self.tool_call_parser,
            "reasoning_parser": self.reasoning_parser,
            "reasoning_parsers": list(self.reasoning_parsers),
            "sampling": dict(self.sampling),
            "min_vllm_version": self.min_vllm_version,
            "min_compute_capability": self.min_compute_capability,
            "fallback_compute_capability": self.fallback_compute_capability,
            "compute_capability_note": self.compute_capability_note,
            "overhead_gib_per_gpu": self.overhead_gib_per_gpu,
            "max_num_seqs": self.max_num_seqs,
            "extra_args": list(self.extra_args),
            "env": dict(self.env),
            "cpu": {
                "servable": self.cpu.servable,
                "reason": self.cpu.reason,
                "kvcache_space_gib": self.cpu.kvcache_space_gib,
                "extra_args": list(self.cpu.extra_args),
            },
            "config": dict(self.config),
            "derived_from_config": list(self.derived_from_config),
            "notes": self.notes,
            "source": self.source,
        }


def kv_element_bytes(kv_cache_dtype: str, model_dtype: str) -> int:
    """Bytes per KV element: 'auto' follows the model dtype (FP8 weights keep a 16-bit cache)."""
    key = (kv_cache_dtype or "auto").lower()
    if key == "auto":
        key = model_dtype.lower()
    if key not in DTYPE_BYTES:
        raise ProfileError(f"unknown KV cache dtype {kv_cache_dtype!r}; use auto, bfloat16, float16 or fp8")
    return DTYPE_BYTES[key]


def parse_capability(text: str | None) -> tuple[int, int] | None:
    """'8.9' -> (8, 9); None or unreadable -> None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """'0.11.1' / 'v0.12.0rc1' / '0.12.0+cu129' -> (0, 11, 1); unreadable -> None."""
    if text is None:
        return None
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text))
    if not match:
        return None
    return tuple(int(p) for p in match.group(1).split("."))


# ---- the spec of a profile (docs/planning.md explains each field) ------------------------------


def _parse_layouts(items: list[Any]) -> tuple[ParallelLayout, ...]:
    return tuple(ParallelLayout.parse(item) for item in items)


def _parse_refused(items: list[dict[str, Any]]) -> tuple[RefusedLayout, ...]:
    return tuple(RefusedLayout(item["layout"], item["reason"].strip()) for item in items)


_ANY: dict[str, Any] = {"type": "raw"}
_POSITIVE = {"type": exact_whole_number, "above": 0}
_SIZE = {"type": exact_number, "above": 0}
_STRING = {"type": text, "parse": str.strip}
_NAME = {"type": text, "nonempty": True, "must": "be a non-empty string", "parse": str.strip}
_STRINGS = {"type": sequence, "elements": text, "must": "be a list of strings", "parse": tuple}
_CAPABILITY = {
    "type": "str",
    "pattern": r"\d+\.\d+",
    "must": 'look like "8.9" (quote it in YAML)',
    "parse": str.strip,
}

CPU_SPEC = DataSpec(
    {
        "servable": {"type": exact_bool, "required": True},
        "reason": _ANY,
        "kvcache_space_gib": _POSITIVE,
        "extra_args": _STRINGS,
    }
)

REFUSED_LAYOUT_SPEC = DataSpec(
    {
        "layout": {"type": "raw", "required": True, "parse": ParallelLayout.parse},
        "reason": {
            "type": "str",
            "required": True,
            "nonempty": True,
            "must": "say why, so that a person can act on it",
        },
    }
)

PROFILE_SPEC = DataSpec(
    {
        "name": _ANY,
        "display_name": _ANY,
        "description": _ANY,
        "model_id": _NAME,
        "served_model_name": _NAME,
        "modelscope_id": _STRING,
        "huggingface_id": _STRING,
        "trust_remote_code": _ANY,
        "config": {"type": mapping, "must": "be a mapping (the model's config.json)"},
        "architecture": _ANY,
        "weight_format": _ANY,
        "weight_block_size": _POSITIVE,
        "dtype": _ANY,
        "weights_bytes": _SIZE,
        "weights_mib": _SIZE,
        "weights_gib": _SIZE,
        "weights_gb": _SIZE,
        "expert_weights_fraction": {
            "type": exact_number,
            "above": 0,
            "below": 1,
            "must": "be a number above 0 and below 1 (the share of the weights in routed experts)",
        },
        "num_layers": _POSITIVE,
        "num_attention_heads": _POSITIVE,
        "num_kv_heads": _POSITIVE,
        "head_dim": _POSITIVE,
        "hidden_size": _POSITIVE,
        "intermediate_size": _POSITIVE,
        "moe_intermediate_size": _POSITIVE,
        "num_experts": _POSITIVE,
        "kv_cache_dtype": _ANY,
        "max_model_len": _POSITIVE,
        "min_model_len": _POSITIVE,
        "layouts": {
            "type": sequence,
            "must": "be a list such as [tp4, tp8-ep]",
            "parse": _parse_layouts,
            "unique": True,
        },
        "refused_layouts": {
            "type": sequence,
            "elements": mapping,
            "must": "be a list of {layout, reason}",
            "options": REFUSED_LAYOUT_SPEC,
            "parse": _parse_refused,
        },
        "tool_call_parser": _STRING,
        "reasoning_parser": _STRING,
        "reasoning_parsers": {"type": sequence, "elements": text, "must": "be a list of parser names"},
        "sampling": {"type": mapping, "must": "be a mapping such as {temperature: 1.0, top_p: 0.95}"},
        "min_vllm_version": _STRING,
        "min_compute_capability": _CAPABILITY,
        "fallback_compute_capability": _CAPABILITY,
        "compute_capability_note": _ANY,
        "overhead_gib_per_gpu": {"type": exact_number, "min": 0},
        "max_num_seqs": _POSITIVE,
        "extra_args": _STRINGS,
        "env": {"type": mapping, "must": "be a mapping of variable names to values"},
        "cpu": {
            "type": mapping,
            "must": "be a mapping with servable (and reason when false)",
            "options": CPU_SPEC,
        },
        "notes": _ANY,
        "extends": _ANY,
        # written by as_dict(); accepted back so a normalised profile can be planned again
        "kv_bytes_per_token": _ANY,
        "expert_weights_bytes": {"type": exact_whole_number, "min": 0},
        "expert_weights_gib": _ANY,
        "derived_from_config": {"type": sequence, "elements": "str"},
        "source": _ANY,
    }
)


def profile_from_dict(data: dict[str, Any], name: str | None = None, source: str = "") -> ModelProfile:
    """Validate a profile dict and resolve every number (derived from ``config`` where possible).

    Raises :class:`ProfileError` naming the profile and the field when something is wrong.
    """
    if not isinstance(data, dict):
        raise ProfileError(f"model profile {name or '?'}: expected a mapping, got {type(data).__name__}")
    name = str(data.get("name") or name or "").strip()
    where = f"model profile {name or '?'}" + (f" ({source})" if source else "")
    if not name:
        raise ProfileError(f"{where}: 'name' is missing")
    values = check_mapping(
        data, PROFILE_SPEC, where, ProfileError, unknown_help="see docs/planning.md for the profile format"
    )
    config = values.get("config") or {}
    shape = derive_from_config(config) if config else ConfigShape()
    derived: list[str] = []
    model = _model_shape(values, shape, derived, where)
    model.update(_weights(values, shape, model["architecture"], derived, where))
    model.update(_layouts(values, model["architecture"], where))
    model.update(_serving(values, model, where))
    model_id = values.get("model_id", name)
    return ModelProfile(
        name=name,
        display_name=str(values.get("display_name") or name),
        model_id=model_id,
        served_model_name=values.get("served_model_name", model_id),
        modelscope_id=values.get("modelscope_id"),
        huggingface_id=values.get("huggingface_id"),
        trust_remote_code=bool(values.get("trust_remote_code", False)),
        compute_capability_note=str(values.get("compute_capability_note") or "").strip(),
        overhead_gib_per_gpu=values.get("overhead_gib_per_gpu", DEFAULT_OVERHEAD_GIB_PER_GPU),
        cpu=_cpu_support(values.get("cpu"), where),
        config=dict(config),
        derived_from_config=tuple(dict.fromkeys([*values.get("derived_from_config", []), *derived])),
        notes=str(values.get("notes") or "").strip(),
        source=source or str(values.get("source") or ""),
        **model,
    )


def _model_shape(
    values: dict[str, Any], shape: ConfigShape, derived: list[str], where: str
) -> dict[str, Any]:
    """The model's numbers: as the profile states them, else as config.json gives them."""

    def pick(key: str) -> Any:
        if values.get(key) is not None:
            return values[key]
        from_config = getattr(shape, key)
        if from_config is not None:
            derived.append(key)
        return from_config

    def need(key: str) -> Any:
        value = pick(key)
        if value is None:
            raise ProfileError(
                f"{where}: '{key}' is missing and cannot be derived from 'config' (config.json)"
            )
        return value

    fields = {key: need(key) for key in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim")}
    fields["max_model_len"] = need("max_model_len")
    dtype = str(pick("dtype") or "bfloat16").lower()
    if dtype not in DTYPE_BYTES:
        raise ProfileError(f"{where}: unknown dtype {dtype!r}; use bfloat16, float16 or float32")
    fields["dtype"] = dtype
    fields["weight_format"] = str(pick("weight_format") or dtype).lower()
    for key in (
        "weight_block_size",
        "hidden_size",
        "intermediate_size",
        "moe_intermediate_size",
        "num_experts",
    ):
        fields[key] = pick(key)
    architecture = str(values.get("architecture") or ("moe" if fields["num_experts"] else "dense")).lower()
    if architecture not in ("dense", "moe"):
        raise ProfileError(f"{where}: architecture must be 'dense' or 'moe', got {architecture!r}")
    fields["architecture"] = architecture
    heads, kv_heads = fields["num_attention_heads"], fields["num_kv_heads"]
    if heads % kv_heads:
        raise ProfileError(
            f"{where}: num_attention_heads ({heads}) must be a multiple of num_kv_heads ({kv_heads})"
        )
    return fields


def _weights(
    values: dict[str, Any], shape: ConfigShape, architecture: str, derived: list[str], where: str
) -> dict[str, int]:
    """The weights' size (stated, else estimated from config.json) and the share in routed experts."""
    weights = _stated_weights(values, where)
    if weights is None:
        weights = shape.weights_bytes
        if weights is None:
            raise ProfileError(
                f"{where}: give weights_gib (or weights_gb/weights_mib/weights_bytes): "
                "the weights' size cannot be estimated from this config"
            )
        derived.append("weights_bytes")
    if architecture != "moe":
        return {"weights_bytes": weights, "expert_weights_bytes": 0}
    if values.get("expert_weights_fraction") is not None:
        expert_weights = int(weights * values["expert_weights_fraction"])
    elif values.get("expert_weights_bytes") is not None:
        expert_weights = values["expert_weights_bytes"]
    elif shape.weights_bytes and shape.expert_weights_bytes:
        # the config gives the share of routed experts; scale it to the stated size
        expert_weights = int(weights * shape.expert_weights_bytes / shape.weights_bytes)
        derived.append("expert_weights_bytes")
    else:
        raise ProfileError(
            f"{where}: a MoE profile needs expert_weights_fraction (the share of the weights in routed "
            "experts) when config.json does not give the expert shapes"
        )
    if expert_weights >= weights:
        raise ProfileError(f"{where}: expert weights cannot be the whole model")
    return {"weights_bytes": weights, "expert_weights_bytes": expert_weights}


def _stated_weights(values: dict[str, Any], where: str) -> int | None:
    given = [k for k in ("weights_bytes", "weights_mib", "weights_gib", "weights_gb") if k in values]
    if len(given) > 1:
        # as_dict() writes weights_bytes and weights_gib together; they agree, so bytes win
        if set(given) == {"weights_bytes", "weights_gib"}:
            given = ["weights_bytes"]
        else:
            raise ProfileError(f"{where}: give the weights' size once, not as {', '.join(given)}")
    if not given:
        return None
    key = given[0]
    scale = {"weights_bytes": 1, "weights_mib": MIB, "weights_gib": GIB, "weights_gb": GB}[key]
    return int(values[key] * scale)


def _layouts(values: dict[str, Any], architecture: str, where: str) -> dict[str, Any]:
    layouts = values.get("layouts", ())
    refused = values.get("refused_layouts", ())
    clash = {r.layout for r in refused} & set(layouts)
    if clash:
        raise ProfileError(f"{where}: layouts {sorted(x.name for x in clash)} are both supported and refused")
    if architecture == "dense" and any(layout.ep for layout in layouts):
        raise ProfileError(f"{where}: expert parallel layouts need a MoE model")
    return {"layouts": layouts, "refused_layouts": refused}


def _serving(values: dict[str, Any], model: dict[str, Any], where: str) -> dict[str, Any]:
    """How vLLM serves the model: KV cache, context, parsers, minimum versions, arguments."""
    kv_cache_dtype = str(values.get("kv_cache_dtype") or "auto").lower()
    try:
        kv_element_bytes(kv_cache_dtype, model["dtype"])
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from exc
    max_model_len = model["max_model_len"]
    min_model_len = values.get("min_model_len", min(DEFAULT_MIN_MODEL_LEN, max_model_len))
    if min_model_len > max_model_len:
        raise ProfileError(
            f"{where}: min_model_len ({min_model_len}) exceeds max_model_len ({max_model_len})"
        )
    reasoning = values.get("reasoning_parser")
    choices = values.get("reasoning_parsers") or ([reasoning] if reasoning else [])
    if reasoning and reasoning not in choices:
        raise ProfileError(f"{where}: reasoning_parser {reasoning!r} is not in reasoning_parsers {choices}")
    min_cc, fallback_cc = values.get("min_compute_capability"), values.get("fallback_compute_capability")
    if min_cc and fallback_cc and parse_capability(fallback_cc) >= parse_capability(min_cc):  # type: ignore[operator]
        raise ProfileError(f"{where}: fallback_compute_capability must be below min_compute_capability")
    min_vllm = values.get("min_vllm_version")
    if min_vllm and parse_version(min_vllm) is None:
        raise ProfileError(f"{where}: min_vllm_version {min_vllm!r} is not a version number")
    return {
        "kv_cache_dtype": kv_cache_dtype,
        "min_model_len": min_model_len,
        "tool_call_parser": values.get("tool_call_parser"),
        "reasoning_parser": reasoning,
        "reasoning_parsers": tuple(choices),
        "sampling": dict(values.get("sampling", {})),
        "min_vllm_version": min_vllm,
        "min_compute_capability": min_cc,
        "fallback_compute_capability": fallback_cc,
        "max_num_seqs": values.get("max_num_seqs"),
        "extra_args": values.get("extra_args", ()),
        "env": {str(k): str(v) for k, v in values.get("env", {}).items()},
    }


def _cpu_support(cpu: dict[str, Any] | None, where: str) -> CpuSupport:
    if cpu is None:
        return CpuSupport(servable=False, reason="the profile does not say the model can be served on CPU")
    reason = str(cpu.get("reason") or "").strip()
    if not cpu["servable"] and not reason:
        raise ProfileError(f"{where}: cpu.reason must say why the model cannot be served on CPU")
    return CpuSupport(
        servable=cpu["servable"],
        reason=reason,
        kvcache_space_gib=cpu.get("kvcache_space_gib", DEFAULT_CPU_KVCACHE_SPACE_GIB),
        extra_args=cpu.get("extra_args", ()),
    )


def merge_profile(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge an inventory profile over the one it ``extends`` (lists and scalars replace)."""
    merged = dict(base)
    for key, value in override.items():
        if key == "extends":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_profile(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_profile(
    name: str,
    shipped: dict[str, dict[str, Any]],
    user: dict[str, dict[str, Any]] | None = None,
    sources: dict[str, str] | None = None,
) -> ModelProfile:
    """Find ``name`` among the user's profiles (inventory) and the shipped ones, follow ``extends``.

    ``name`` is a profile name (any case) or, failing that, a model id (``MiniMaxAI/MiniMax-M2``)
    or hub id. User profiles win. ``extends`` names a profile by its name only; an inventory
    profile that extends its own name starts from the shipped profile of that name.
    """
    user = user or {}
    if not isinstance(user, dict):
        raise ProfileError("llmfleet_model_profiles must be a mapping of profile name to profile")
    sources = sources or {}
    inventory = "inventory llmfleet_model_profiles"

    def find(wanted: str, by_id: bool, shipped_only: bool = False) -> tuple[str, dict[str, Any], str] | None:
        stores = ((shipped, None),) if shipped_only else ((user, inventory), (shipped, None))
        finders = (_find_name, _find_id) if by_id else (_find_name,)
        for finder in finders:
            for profiles, source in stores:
                key = finder(wanted, profiles)
                if key is not None:
                    data = profiles[key]
                    if not isinstance(data, dict):
                        raise ProfileError(
                            f"model profile {key} ({source or 'collection'}): expected a mapping"
                        )
                    return key, data, source or sources.get(key, "collection models/")
        return None

    def load(
        wanted: str, chain: tuple[str, ...], by_id: bool, shipped_only: bool = False
    ) -> tuple[dict[str, Any], str]:
        found = find(wanted, by_id, shipped_only)
        if found is None:
            known = sorted(set(shipped) | set(user))
            raise ProfileError(
                f"no model profile named {wanted!r}; known profiles: {', '.join(known)}. "
                "Add your own under llmfleet_model_profiles in the inventory (see docs/planning.md)"
            )
        key, data, source = found
        link = f"{source}:{key}"
        if link in chain:
            names = [c.split(":", 1)[1] for c in (*chain, link)]
            raise ProfileError(f"model profile {key}: 'extends' loops ({' -> '.join(names)})")
        parent = data.get("extends")
        if parent:
            parent = str(parent)
            own_name = source == inventory and _find_name(parent, {key: data}) is not None
            base, _ = load(parent, (*chain, link), by_id=False, shipped_only=own_name)
            data = merge_profile(base, data)
        return {**data, "name": key}, source

    data, source = load(name, (), by_id=True)
    return profile_from_dict(data, source=source)


def _find_name(wanted: str, profiles: dict[str, dict[str, Any]]) -> str | None:
    if wanted in profiles:
        return wanted
    low = wanted.lower()
    for key in profiles:
        if key.lower() == low:
            return key
    return None


def _find_id(wanted: str, profiles: dict[str, dict[str, Any]]) -> str | None:
    low = wanted.lower()
    for key, data in profiles.items():
        if not isinstance(data, dict):
            continue
        ids = (
            data.get("model_id"),
            data.get("served_model_name"),
            data.get("huggingface_id"),
            data.get("modelscope_id"),
        )
        if any(isinstance(i, str) and i.lower() == low for i in ids):
            return key
    return None


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def round_down(value: int, step: int) -> int:
    return (value // step) * step if value >= step else value


__all__ = [
    "CPU_HEAD_SIZES",
    "CPU_WEIGHT_FORMATS",
    "GB",
    "GIB",
    "MIB",
    "ConfigShape",
    "CpuSupport",
    "ModelProfile",
    "ParallelLayout",
    "ProfileError",
    "RefusedLayout",
    "ceil_div",
    "derive_from_config",
    "kv_element_bytes",
    "merge_profile",
    "parse_capability",
    "parse_version",
    "profile_from_dict",
    "resolve_profile",
    "round_down",
]
