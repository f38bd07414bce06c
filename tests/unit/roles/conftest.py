"""Role templates rendered in-process with the role's real defaults and vars, as the template action would."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[3]


def _trusted(value: Any) -> Any:
    """Role files are trusted templates, as when a play loads them."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def role_variables(loader: DataLoader, role: str) -> dict[str, Any]:
    """defaults of the role's dependencies, then its own defaults and vars (the play's precedence)."""
    variables: dict[str, Any] = {}
    meta = (
        loader.load_from_file(str(REPO / "roles" / role / "meta/main.yml"))
        if (REPO / "roles" / role / "meta/main.yml").exists()
        else {}
    )
    for dependency in (meta or {}).get("dependencies") or []:
        name = (dependency["role"] if isinstance(dependency, dict) else dependency).split(".")[-1]
        variables.update(role_variables(loader, name))
    for part in ("defaults/main.yml", "vars/main.yml"):
        path = REPO / "roles" / role / part
        if path.exists():
            variables.update(_trusted(loader.load_from_file(str(path)) or {}))
    return variables


@pytest.fixture(scope="session")
def render_template() -> Callable[..., str]:
    """``render_template(role, template, **host_vars)``: the rendered text of roles/ROLE/templates/TEMPLATE."""
    # tests/conftest.py imports the collection as plain packages; Ansible's collection loader must load the
    # collection's package (with its metadata) and its filter plugins itself. Other modules stay shared.
    for name in list(sys.modules):
        if name in (
            "ansible_collections",
            "ansible_collections.llmfleet",
            "ansible_collections.llmfleet.serve",
        ) or (name.startswith("ansible_collections.llmfleet.serve.plugins.filter")):
            del sys.modules[name]
    init_plugin_loader([str(REPO / ".collections")])
    loader = DataLoader()

    def render(role: str, template: str, **host_vars: Any) -> str:
        variables = {"ansible_managed": "Ansible managed", "inventory_hostname": "test-host"}
        variables.update(role_variables(loader, role))
        variables.update(host_vars)
        source = (REPO / "roles" / role / "templates" / template).read_text()
        return str(Templar(loader=loader, variables=variables).template(trust_as_template(source)))

    return render
