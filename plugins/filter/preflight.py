"""Filters behind the preflight role: they turn inventory values into messages a person can act on."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils.preflight import (
    RoleSpec,
    check_ansible_version,
    check_host_vars,
    check_os,
    role_spec,
)

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"


@cache
def collection_role_specs(roles_dir: Path = ROLES_DIR) -> tuple[RoleSpec, ...]:
    specs = []
    for path in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        specs.append(role_spec(path.parents[1].name, yaml.safe_load(path.read_text()) or {}))
    return tuple(specs)


def preflight_var_errors(host_vars: dict[str, Any], host: str) -> list[str]:
    return check_host_vars(host, host_vars, list(collection_role_specs()))


def preflight_os_errors(host: str, distribution: str, version: str, supported: dict[str, list]) -> list[str]:
    return check_os(host, distribution, version, supported)


def preflight_ansible_errors(version: str, minimum: str, below: str) -> list[str]:
    return check_ansible_version(version, minimum, below)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "preflight_var_errors": preflight_var_errors,
            "preflight_os_errors": preflight_os_errors,
            "preflight_ansible_errors": preflight_ansible_errors,
        }
