"""Every role documents every entry point in meta/argument_specs.yml, and its specs agree with defaults."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


def tasks_from(role: str) -> set[str]:
    """The entry points other task files use: import_role/include_role of ``role`` with tasks_from."""
    used = set()
    for path in [*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml")]:
        for found in re.finditer(r"name: llmfleet\.serve\.(\w+)\n\s+tasks_from: ([\w.-]+)", path.read_text()):
            if found[1] == role:
                used.add(found[2].removesuffix(".yml"))
    return used


def test_shared_task_files_are_found():
    assert {"read", "switch", "prune"} <= tasks_from("release_links")


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_entry_point_has_a_spec(role):
    specs = load(role / "meta/argument_specs.yml").get("argument_specs", {})
    entry_points = {p.stem for p in (role / "tasks").glob("*.yml") if p.stem == "main"} | tasks_from(
        role.name
    )
    assert entry_points <= set(specs), f"{role.name}: entry points without argument specs"


def playbook_vars() -> dict:
    """The llmfleet_ variables the playbooks set in their vars files (play keywords cannot see role defaults)."""
    found = {}
    for path in sorted(REPO.glob("playbooks/vars/*.yml")):
        found.update(load(path))
    return found


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_specs_agree(role):
    defaults = load(role / "defaults/main.yml")
    if role.name == "settings":
        defaults |= playbook_vars()
    options = {}
    for entry in load(role / "meta/argument_specs.yml").get("argument_specs", {}).values():
        options.update(entry.get("options") or {})
    assert set(defaults) - set(options) == set(), f"{role.name}: defaults without a spec"
    for name, spec in options.items():
        if spec.get("required"):
            assert name not in defaults, f"{role.name}: {name} is required but has a default"
            continue
        assert name in defaults, f"{role.name}: optional {name} has no default in defaults/main.yml"
        assert spec.get("default") == defaults[name], f"{role.name}: {name} default differs from the spec"
        assert spec.get("description"), f"{role.name}: {name} has no description"
