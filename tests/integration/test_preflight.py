"""The preflight play against the controller itself: bad inventory values fail with usable messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def preflight(tmp_path: Path, host_vars: dict, *extra: str) -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"gpu-07": host}}}))
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/preflight.yml", *extra],
        cwd=REPO, env=env, text=True, capture_output=True, check=False,
    )  # fmt: skip


def test_good_inventory_passes(tmp_path):
    result = preflight(tmp_path, {"llmfleet_model": "qwen3-8b"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        (
            {"llmfleet_modle": "x"},
            "host gpu-07: llmfleet_modle is not a variable of llmfleet; did you mean llmfleet_model?",
        ),
        ({"preflight_supported_os": {"Ubuntu": ["24"]}}, "host gpu-07: the OS Debian 12"),
        ({"preflight_ansible_min": "9.0.0"}, "is not supported; accepted: >= 9.0.0 and < 2.22.0"),
        ({"llmfleet_model_profiles": "not-a-dict"}, "llmfleet_model_profiles"),
    ],
    ids=["typo", "unsupported-os", "ansible-version", "wrong-type"],
)
def test_bad_inventory_fails_naming_host_variable_and_value(tmp_path, host_vars, expected):
    result = preflight(tmp_path, host_vars)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_a_run_prints_no_deprecation_warning(tmp_path):
    """List and dict values reach the filter as ansible-core's lazy containers, with the templar that
    rendered the values before them (as in the lab inventory)."""
    host_vars = {
        "llmfleet_model": "{{ 'qwen3-8b' }}",
        "vllm_runtime_find_links": ["/opt/wheels"],
        "llmfleet_plan_overrides": {"max_num_seqs": 8},
    }
    result = preflight(tmp_path, host_vars)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DEPRECATION" not in result.stdout + result.stderr, result.stdout + result.stderr
