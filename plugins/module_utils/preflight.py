"""Preflight checks: inventory values against the roles' argument specs, the OS, the Ansible version.

Every message names the host, the variable and the bad value, and says what is accepted, so a
user can fix the inventory without reading the code.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# Role and collection prefixes whose variables are checked; anything else in the inventory is the
# user's own business.
GLOBAL_PREFIX = "llmfleet_"
# Facts llmfleet's roles publish at run time; a later preflight in the same run sees them, but they
# are never inventory input.
RUNTIME_VARIABLES = frozenset(
    {
        "llmfleet_gpu",
        "llmfleet_plan",
        "llmfleet_runtime",
        "llmfleet_model_path",
        "llmfleet_model_revision",
        "nvidia_driver_result",
        # where the release_links role (used by vllm_runtime and model_weights) found current and previous
        "release_links_current",
        "release_links_previous",
        # what endpoint_check proved, and what a rollout read and recorded (roles/rollout)
        "endpoint_check_result",
        "rollout_manifest",
        "rollout_manifest_digest",
        "rollout_report",
        "rollout_serving",
        "rollout_batch",
        "rollout_recorded",
    }
)


@dataclass(frozen=True)
class RoleSpec:
    """The options of one role's entry points, merged (as read from meta/argument_specs.yml)."""

    role: str
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.role}_"


def role_spec(role: str, argument_specs: Mapping[str, Any]) -> RoleSpec:
    options: dict[str, Mapping[str, Any]] = {}
    for entry in (argument_specs or {}).get("argument_specs", {}).values():
        options.update(entry.get("options") or {})
    return RoleSpec(role=role, options=options)


def describe_accepted(spec: Mapping[str, Any]) -> str:
    """A short phrase saying what an option accepts, e.g. "an int", "one of: a, b"."""
    kind = spec.get("type", "str")
    if spec.get("choices"):
        return "one of: " + ", ".join(str(c) for c in spec["choices"])
    if kind == "list" and spec.get("elements"):
        inner = describe_accepted({k: v for k, v in spec.items() if k not in ("type", "elements", "options")}
                                  | {"type": spec["elements"]})  # fmt: skip
        return f"a list, each element {inner}"
    if kind == "dict" and spec.get("options"):
        return "a dict with keys: " + ", ".join(sorted(spec["options"]))
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{article} {kind}"


def _spec_for_validator(spec: Mapping[str, Any]) -> dict[str, Any]:
    """argument_specs.yml keys that ArgumentSpecValidator does not know are dropped."""
    allowed = {"type", "choices", "elements", "options", "required", "no_log", "default", "aliases"}
    clean = {k: v for k, v in spec.items() if k in allowed}
    if clean.get("options"):
        clean["options"] = {name: _spec_for_validator(sub) for name, sub in clean["options"].items()}
    return clean


def plain(value: Any) -> Any:
    """``value`` as plain dicts, lists and tuples. A filter receives Ansible's lazy containers, which carry
    the templar: ArgumentSpecValidator deep-copies its input, and a copied templar rebuilds its plugin
    loaders through a path ansible-core deprecates (a deprecation warning on every run)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return (tuple if isinstance(value, tuple) else list)(plain(item) for item in value)
    return value


def check_value(host: str, name: str, value: Any, spec: Mapping[str, Any]) -> list[str]:
    value = plain(value)
    result = ArgumentSpecValidator({name: _spec_for_validator(spec)}).validate({name: value})
    shown = "<hidden>" if spec.get("no_log") else repr(value)
    return [
        f"host {host}: {name} = {shown} is not accepted ({error}); accepted: {describe_accepted(spec)}"
        for error in result.error_messages
    ]


def check_host_vars(host: str, provided: Mapping[str, Any], specs: list[RoleSpec]) -> list[str]:
    """Check every llmfleet or role variable the inventory sets; flag unknown ones with a suggestion."""
    known = {name: spec for role in specs for name, spec in role.options.items()}
    prefixes = (GLOBAL_PREFIX, *(role.prefix for role in specs))
    errors: list[str] = []
    for name in sorted(provided):
        if name in known:
            errors.extend(check_value(host, name, provided[name], known[name]))
        elif name.startswith(prefixes) and name not in RUNTIME_VARIABLES:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            errors.append(f"host {host}: {name} is not a variable of llmfleet{hint}")
    return errors


def check_os(host: str, distribution: str, version: str, supported: Mapping[str, list[str]]) -> list[str]:
    """`supported` maps a distribution name to its supported major versions (as strings)."""
    major = str(version).split(".")[0]
    versions = [str(v) for v in supported.get(distribution, [])]
    if major in versions or str(version) in versions:
        return []
    accepted = "; ".join(f"{name} {', '.join(str(v) for v in vs)}" for name, vs in supported.items())
    return [f"host {host}: the OS {distribution} {version} is not supported; accepted: {accepted}"]


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_ansible_version(version: str, minimum: str, below: str) -> list[str]:
    if _version_tuple(minimum) <= _version_tuple(version) < _version_tuple(below):
        return []
    return [f"ansible-core {version} is not supported; accepted: >= {minimum} and < {below}"]
