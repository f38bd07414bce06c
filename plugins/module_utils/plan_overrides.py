# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The user's plan overrides (the inventory's ``llmfleet_plan_overrides``): their spec and reader.

Values may come from extra vars as strings ("0.85", "yes"), so numbers and booleans are converted
the way Ansible converts module arguments. docs/planning.md explains each key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.data_spec import (
    DataSpec,
    check_mapping,
    number,
    sequence,
    whole_number,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import ParallelLayout

DEFAULT_GPU_MEMORY_UTILIZATION = 0.90
DEFAULT_CPU_MAX_WEIGHTS_GIB = 4.0
#: conservative weight-loading rate from local disk to GPUs (MiB/s): 214 GiB loads in ~45 min
DEFAULT_LOAD_RATE_MIB_S = 80.0


class OverrideError(ValueError):
    """A user override is malformed."""


def _gpu_indices(value: Any) -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise TypeError(f"{value!r} is not a list of GPU indexes")
    return tuple(whole_number(str(i).strip()) for i in items)


_POSITIVE_WHOLE = {"type": whole_number, "min": 1}
_TEXT = {"type": "str", "parse": str.strip}
_FLAG = {"type": "bool"}

OVERRIDES_SPEC = DataSpec(
    {
        "gpu_memory_utilization": {"type": number, "min": 0.05, "max": 0.99},
        "max_model_len": _POSITIVE_WHOLE,
        "max_model_len_auto": _FLAG,
        "max_num_seqs": _POSITIVE_WHOLE,
        "layout": {"type": "raw", "parse": ParallelLayout.parse},
        "allow_gpu_subset": _FLAG,
        "gpu_indices": {
            "type": _gpu_indices,
            "must": "be a list of GPU indexes (whole numbers) such as [0, 1, 2, 3]",
            "unique": True,
        },
        "kv_cache_dtype": _TEXT,
        "vllm_version": _TEXT,
        "reasoning_parser": _TEXT,
        "served_model_name": _TEXT,
        "overhead_gib_per_gpu": {"type": number, "min": 0},
        "cpu_kvcache_space_gib": _POSITIVE_WHOLE,
        "cpu_max_weights_gib": {"type": number, "min": 0.001},
        "host_memory_mib": _POSITIVE_WHOLE,
        "load_rate_mib_s": {"type": number, "min": 0.001},
        "extra_args": {
            "type": sequence,
            "elements": "str",
            "must": "be a list of strings, one argv element each",
            "parse": tuple,
        },
    }
)


@dataclass(frozen=True)
class Overrides:
    """What a user may set: the keys of :data:`OVERRIDES_SPEC`; unset ones keep these defaults."""

    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_model_len: int | None = None
    max_model_len_auto: bool = False
    max_num_seqs: int | None = None
    layout: ParallelLayout | None = None
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
    def from_dict(cls, data: dict[str, Any] | Overrides | None) -> Overrides:
        """Read overrides; ``None`` and ``""`` mean "not set". Raises OverrideError on bad values."""
        if data is None:
            return cls()
        if isinstance(data, Overrides):
            return data
        if not isinstance(data, dict):
            raise OverrideError(f"overrides must be a mapping, got {type(data).__name__}")
        given = {key: value for key, value in data.items() if value is not None}
        known = ", ".join(sorted(OVERRIDES_SPEC.rules))
        values = check_mapping(
            given, OVERRIDES_SPEC, "", OverrideError, noun="overrides", unknown_help=f"known: {known}"
        )
        return cls(**values)


__all__ = ["OVERRIDES_SPEC", "OverrideError", "Overrides"]
