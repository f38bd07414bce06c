"""ansible-doc renders every module of the collection, with the attributes its doc fragment supplies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[4]
MODULES = sorted(p.stem for p in (REPO / "plugins/modules").glob("*.py") if p.stem != "__init__")
SUPPORT = {"full", "partial", "none", "N/A"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """What ``ansible-doc --json`` renders for each module (run from the checkout: ansible.cfg's collections path)."""
    names = [f"llmfleet.serve.{name}" for name in MODULES]
    ansible_doc = Path(sys.executable).parent / "ansible-doc"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    out = subprocess.run(
        [str(ansible_doc), "--json", "-t", "module", *names],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    return {name.rsplit(".", 1)[1]: entry["doc"] for name, entry in json.loads(out.stdout).items()}


@pytest.mark.parametrize("name", MODULES)
def test_module_renders_with_its_attributes(rendered, name):
    doc = rendered[name]
    assert doc["options"] and doc["short_description"]
    assert {"check_mode", "diff_mode", "idempotent"} <= set(doc["attributes"])
    for attribute, entry in doc["attributes"].items():
        assert entry["description"] and entry["support"] in SUPPORT, (attribute, entry)


def test_fragment_states_what_the_modules_support(rendered):
    attributes = rendered["gpu_facts"]["attributes"]
    assert attributes["check_mode"]["support"] == "full"
    assert attributes["diff_mode"]["support"] == "none"
    assert attributes["facts"]["support"] == "full"
    assert attributes["check_mode"]["details"]  # the module's own details are merged over the fragment
