"""Merging the captures of one host (nvidia-smi outputs or NVML) into one :class:`GpuFacts`.

Captures are merged by GPU index (the nvidia-smi enumeration order, which every output shares);
sources that contradict each other raise :class:`NvidiaSmiError` (reason ``inconsistent``). The
interconnect class comes from the GPU-to-GPU link matrix. Standard library only: this code runs on
target hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.compute_capability_names import (
    compute_capability_from_name,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import (
    Gpu,
    GpuFacts,
    MigDevice,
    empty_facts,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_errors import NvidiaSmiError
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_parsers import (
    KIND_CSV,
    KIND_LIST,
    KIND_NVML,
    KIND_TABLE,
    KIND_TOPO,
    KIND_XML,
    Capture,
    parse_capture,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.nvidia_smi_values import is_masked_uuid

#: Field precedence when sources disagree or complement each other (first non-empty value wins).
SOURCE_PRIORITY = (KIND_NVML, KIND_XML, KIND_CSV, KIND_LIST, KIND_TABLE, KIND_TOPO)

#: A GPU has at most 18 NVLink links (H100, B200; A100 has 12, V100 6). When a topo matrix shows
#: every GPU with more links in total to its peers than that, the links cannot be direct
#: GPU-to-GPU cables/bridges: the GPUs sit on an NVSwitch fabric.
MAX_DIRECT_NVLINKS_PER_GPU = 18


# --------------------------------------------------------------------------------------------
# Interconnect
# --------------------------------------------------------------------------------------------


def _nvlink_count(link: str | None) -> int | None:
    match = re.fullmatch(r"NV(\d+)", link or "")
    return int(match.group(1)) if match else None


def classify_links(count: int, links: dict[tuple[int, int], str] | None) -> tuple[str, bool | None]:
    """(interconnect, nvswitch) from a GPU-to-GPU link matrix.

    * 0 or 1 GPU: ``none`` (nvswitch None: one GPU alone tells nothing about a fabric);
    * no matrix: ``unknown``;
    * every pair ``NV#``: ``nvlink``; some pairs: ``nvlink-partial``; no pair: ``pcie``;
    * nvswitch: True when every GPU has more NVLinks in total to its peers than a GPU has
      (:data:`MAX_DIRECT_NVLINKS_PER_GPU`), which only a switch can give (8x NV18 on HGX H100/
      H200/B200, 8x NV12 on HGX A100); False for a full mesh within that budget (2x NV12 bridge,
      4x NV6 board) and for PCIe only; None for a partial mesh.
    """
    if count <= 1:
        return "none", None
    if links is None:
        return "unknown", None
    indexes = range(count)
    per_gpu = dict.fromkeys(indexes, 0)
    pairs = 0
    nv_pairs = 0
    for i in indexes:
        for j in indexes:
            if j <= i:
                continue
            pairs += 1
            counts = [c for c in (_nvlink_count(links.get((i, j))), _nvlink_count(links.get((j, i)))) if c]
            if counts:
                nv_pairs += 1
                per_gpu[i] += max(counts)
                per_gpu[j] += max(counts)
    if nv_pairs == 0:
        return "pcie", False
    through_switch = all(total > MAX_DIRECT_NVLINKS_PER_GPU for total in per_gpu.values())
    if nv_pairs == pairs:
        return "nvlink", through_switch
    return "nvlink-partial", True if through_switch else None


# --------------------------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------------------------


def _priority(capture: Capture) -> int:
    return SOURCE_PRIORITY.index(capture.kind) if capture.kind in SOURCE_PRIORITY else len(SOURCE_PRIORITY)


def _inconsistent(what: str) -> NvidiaSmiError:
    return NvidiaSmiError(
        f"the nvidia-smi sources disagree: {what}; were they captured on the same host at the same time?",
        reason="inconsistent",
    )


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def _merge_gpu(index: int, candidates: list[tuple[str, Gpu]]) -> Gpu:
    uuids = {(kind, g.uuid) for kind, g in candidates if g.uuid and not is_masked_uuid(g.uuid)}
    if len({u for _k, u in uuids}) > 1:
        raise _inconsistent(f"GPU {index} has UUIDs {sorted(uuids)}")
    buses = {(kind, g.pci_bus_id) for kind, g in candidates if g.pci_bus_id}
    if len({b for _k, b in buses}) > 1:
        raise _inconsistent(f"GPU {index} has PCI bus ids {sorted(buses)}")
    gpus = [g for _k, g in candidates]
    names = [g.name for g in gpus if g.name]
    full_names = [n for n in names if not n.endswith("...")]
    uuid = _first(g.uuid for g in gpus if g.uuid and not is_masked_uuid(g.uuid)) or _first(
        g.uuid for g in gpus
    )
    merged = Gpu(
        index=index,
        name=(full_names or names or [None])[0],
        uuid=uuid,
        pci_bus_id=_first(g.pci_bus_id for g in gpus),
        memory_total_mib=_first(g.memory_total_mib for g in gpus),
        mig_mode=_first(g.mig_mode for g in gpus),
    )
    for kind, gpu in candidates:
        if gpu.compute_capability:
            merged.compute_capability = gpu.compute_capability
            merged.compute_capability_source = "nvml" if kind == KIND_NVML else "nvidia-smi"
            break
    else:
        merged.compute_capability = compute_capability_from_name(merged.name)
        merged.compute_capability_source = "name-table" if merged.compute_capability else None
    return merged


def _merge_mig(captures: list[Capture]) -> list[MigDevice]:
    merged: dict[tuple[int, int], MigDevice] = {}
    for capture in captures:
        for position, dev in enumerate(capture.mig_devices):
            key = (dev.gpu_index, position if dev.device_index is None else dev.device_index)
            have = merged.get(key)
            if have is None:
                merged[key] = MigDevice(**asdict(dev))
                continue
            for name, value in asdict(dev).items():
                if getattr(have, name) is None and value is not None:
                    setattr(have, name, value)
    return [merged[key] for key in sorted(merged)]


def merge_captures(captures: Sequence[Capture]) -> GpuFacts:
    """Merge captures of one host (any kinds, any order) into one result.

    Raises :class:`NvidiaSmiError` (reason ``inconsistent``) when the sources contradict each
    other: a different GPU count, UUID, PCI bus id or driver version.
    """
    if not captures:
        return empty_facts()
    ordered = sorted(captures, key=_priority)
    facts = GpuFacts(source=list(dict.fromkeys(c.kind for c in captures)))
    for capture in captures:
        facts.warnings.extend(w for w in capture.warnings if w not in facts.warnings)

    counts = [(c.kind, len(c.gpus)) for c in ordered]
    if len({n for _k, n in counts}) > 1:
        raise _inconsistent("GPU counts " + ", ".join(f"{k}={n}" for k, n in counts))
    indexes = [(c.kind, sorted(g.index for g in c.gpus)) for c in ordered]
    if len({tuple(i) for _k, i in indexes}) > 1:
        raise _inconsistent("GPU indexes " + ", ".join(f"{k}={i}" for k, i in indexes))
    facts.count = counts[0][1]

    drivers = {c.driver_version for c in ordered if c.driver_version}
    if len(drivers) > 1:
        raise _inconsistent(f"driver versions {sorted(drivers)}")
    facts.driver_version = _first(c.driver_version for c in ordered)
    facts.cuda_version = _first(c.cuda_version for c in ordered)

    by_index: dict[int, list[tuple[str, Gpu]]] = {}
    for capture in ordered:
        for gpu in capture.gpus:
            by_index.setdefault(gpu.index, []).append((capture.kind, gpu))
    facts.gpus = [_merge_gpu(index, by_index[index]) for index in sorted(by_index)]

    facts.mig_devices = _merge_mig(ordered)
    for gpu in facts.gpus:
        if gpu.mig_mode is None and any(d.gpu_index == gpu.index for d in facts.mig_devices):
            gpu.mig_mode = "Enabled"

    links = _first(c.links for c in ordered)
    facts.interconnect, nvswitch = classify_links(facts.count, links)
    facts.nvswitch = True if any(c.nvswitch for c in ordered) else nvswitch
    return facts


def facts_from_texts(texts: Sequence[str]) -> GpuFacts:
    """Detect, parse and merge several captures of one host.

    An output that only says an option is unsupported (``usage``, e.g. ``topo -m`` on Windows)
    becomes a warning when other captures give the GPUs; every other error is raised.
    """
    captures: list[Capture] = []
    skipped: list[NvidiaSmiError] = []
    for text in texts:
        try:
            captures.append(parse_capture(text))
        except NvidiaSmiError as exc:
            if exc.reason != "usage":
                raise
            skipped.append(exc)
    if not captures:
        if skipped:
            raise skipped[0]
        return empty_facts()
    facts = merge_captures(captures)
    facts.warnings.extend(exc.msg for exc in skipped)
    return facts
