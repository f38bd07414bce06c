# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters ``vllm_plan``, ``model_profile`` and ``vllm_plan_table``: thin shells over module_utils."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    ModelProfile,
    ProfileError,
    derive_from_config,
    profile_from_dict,
    resolve_profile,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_result import VllmPlan
from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_plan import plan_vllm

#: reason code of a host that has no plan at all in a report
NO_PLAN = "no_plan"

#: the collection's models/ directory (this file is plugins/filter/vllm_plan.py)
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def _models_stamp(models_dir: Path) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((p.name, p.stat().st_mtime) for p in models_dir.glob("*.yml")))


@functools.lru_cache(maxsize=8)
def _read_models(
    models_dir: str, stamp: tuple[tuple[str, float], ...]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Shipped profiles by name (read once per content stamp: planning 1,000 hosts reads them once)."""
    profiles: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, _mtime in stamp:
        path = Path(models_dir) / name
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise AnsibleFilterError(f"cannot read model profile {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise AnsibleFilterError(f"model profile {path} is not a mapping")
        key = str(data.get("name") or path.stem)
        profiles[key] = data
        sources[key] = str(path)
    return profiles, sources


def shipped_profiles(models_dir: Path = MODELS_DIR) -> tuple[dict[str, Any], dict[str, str]]:
    if not models_dir.is_dir():
        raise AnsibleFilterError(f"the collection's models directory {models_dir} is missing")
    profiles, sources = _read_models(str(models_dir), _models_stamp(models_dir))
    return dict(profiles), dict(sources)


def _load(name: str, profiles: dict[str, Any] | None, config: dict[str, Any] | None) -> ModelProfile:
    if not isinstance(name, str) or not name.strip():
        raise AnsibleFilterError(f"model_profile: expected a profile name such as 'minimax-m2', got {name!r}")
    shipped, sources = shipped_profiles()
    try:
        profile = resolve_profile(name.strip(), shipped, profiles or {}, sources)
        if config:
            derive_from_config(config)  # validates before merging
            data = profile.as_dict()
            # the real config.json wins over the copy in the profile; re-derive from it
            for key in profile.derived_from_config:
                data.pop(key, None)
            data.pop("weights_gib", None)
            data["config"] = {**data["config"], **config}
            profile = profile_from_dict(data, source=profile.source)
    except ProfileError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    return profile


def model_profile(
    name: str, profiles: dict[str, Any] | None = None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``'minimax-m2' | llmfleet.serve.model_profile(llmfleet_model_profiles | default({}))``.

    Returns the normalised profile (every number resolved, sizes in bytes and GiB). ``profiles`` are
    the inventory's own profiles (they win over the shipped ones and may ``extends`` them);
    ``config`` is an optional config.json dict that replaces the profile's copy of it.
    """
    return _load(name, profiles, config).as_dict()


def vllm_plan(
    facts: dict[str, Any] | None,
    profile: str | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    host: str | None = None,
    profiles: dict[str, Any] | None = None,
    discovery_error: str | None = None,
    vllm_versions: dict[str, str] | None = None,
    port: int | None = None,
    nvidia_pci_gpus: int = 0,
) -> dict[str, Any]:
    """``ansible_facts.llmfleet_gpu | llmfleet.serve.vllm_plan(profile, overrides, host=...)``.

    ``profile`` is a profile dict (e.g. from ``model_profile``) or a profile name. A plan that does
    not fit is returned, not raised: read ``fits`` and ``reasons``. A malformed profile raises.
    """
    if isinstance(profile, str):
        resolved = _load(profile, profiles, None)
    elif isinstance(profile, dict):
        try:
            resolved = profile_from_dict(dict(profile), source=str(profile.get("source") or ""))
        except ProfileError as exc:
            raise AnsibleFilterError(str(exc)) from exc
    else:
        raise AnsibleFilterError(
            f"vllm_plan: profile must be a name or a mapping, got {type(profile).__name__}"
        )
    return plan_vllm(
        facts,
        resolved,
        overrides,
        host=host,
        discovery_error=discovery_error,
        vllm_versions=vllm_versions,
        port=int(port) if port is not None else None,
        nvidia_pci_gpus=int(nvidia_pci_gpus or 0),
    ).as_dict()


def vllm_plan_collect(hosts: list[str], hostvars: Any) -> list[dict[str, Any]]:
    """The ``llmfleet_plan`` of each host, in order; a refusal for hosts that have none.

    ``ansible_play_hosts_all | llmfleet.serve.vllm_plan_collect(hostvars)``: hosts that failed or
    were unreachable before planning still appear, so a report never silently drops a host.
    """
    plans = []
    for host in hosts:
        plan = hostvars[host].get("llmfleet_plan") if host in hostvars else None
        if isinstance(plan, dict) and plan:
            plans.append(dict(plan))
            continue
        missing = VllmPlan(
            host=host, model=str(hostvars[host].get("llmfleet_model") or "") if host in hostvars else ""
        )
        missing.refuse(
            NO_PLAN, "no plan: the host failed or was unreachable before planning (see the play's output)"
        )
        plans.append(missing.as_dict())
    return plans


def _short_tokens(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.2f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}K"
    return str(value)


def _context(plan: dict[str, Any]) -> str:
    length = int(plan.get("max_model_len") or 0)
    if not length:
        return "-"
    if plan.get("max_model_len_arg") == "auto":
        return f"auto (est. {length:,})"
    return f"{length:,}"


def vllm_plan_table(plans: list[dict[str, Any]]) -> list[str]:
    """A readable table of plans: host, GPUs, layout, max context, KV tokens, verdict, then reasons."""
    if not isinstance(plans, list):
        raise AnsibleFilterError("vllm_plan_table expects a list of plans")
    header = ("host", "GPUs", "layout", "max context", "KV tokens", "verdict")
    rows = [header]
    notes: list[str] = []
    for plan in plans:
        count = plan.get("gpu_count") or 0
        if plan.get("device") == "cpu":
            gpus = "none (cpu)"
        elif not count:
            gpus = "?"
        else:
            used = plan.get("gpus_used") or 0
            name = plan.get("gpu_name") or "GPU"
            gpus = f"{count} x {name}" + (f" (uses {used})" if used and used != count else "")
            if plan.get("gpu_memory_mib"):
                gpus += f" ({plan['gpu_memory_mib'] / 1024:.1f} GiB)"
        fits = bool(plan.get("fits"))
        verdict = "fits" if fits else "REFUSED: " + ", ".join(plan.get("reason_codes") or ["?"])
        rows.append(
            (
                str(plan.get("host") or "?"),
                gpus,
                str(plan.get("layout") or "-"),
                _context(plan),
                _short_tokens(int(plan.get("kv_cache_tokens") or 0)),
                verdict,
            )
        )
        for reason in plan.get("reasons") or []:
            notes.append(f"{plan.get('host')}: {reason}")
        for suggestion in plan.get("suggestions") or []:
            notes.append(f"{plan.get('host')}: try: {suggestion}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines + notes


class FilterModule:
    """llmfleet.serve planning filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_plan": vllm_plan,
            "model_profile": model_profile,
            "vllm_plan_table": vllm_plan_table,
            "vllm_plan_collect": vllm_plan_collect,
        }
