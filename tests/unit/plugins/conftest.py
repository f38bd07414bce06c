"""Shared by the plugin tests: a module run in-process, a module's options checked against its documentation,
and the GPU that several captures describe."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str]) -> Callable[..., dict[str, Any]]:
    """``run_module(module, args, check_mode=False)``: the module's ``main()`` on ``args``, and its result.
    Warnings come back as their messages (ansible-core reports them as strings or as structured events)."""

    def run(module: ModuleType, args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
        if check_mode:
            args = {**args, "_ansible_check_mode": True}
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        if "warnings" in result:
            result["warnings"] = [w if isinstance(w, str) else w["event"]["msg"] for w in result["warnings"]]
        return result

    return run


@pytest.fixture
def documented_spec() -> Callable[[ModuleType], dict[str, Any]]:
    """``documented_spec(module)``: asserts that the module's argument spec and the options in its
    DOCUMENTATION name the same options with the same type, default, choices, required and elements;
    returns the spec."""

    def check(module: ModuleType) -> dict[str, Any]:
        doc = yaml.safe_load(module.DOCUMENTATION)["options"]
        spec = module.argument_spec()
        assert sorted(doc) == sorted(spec)
        for name, option in spec.items():
            assert doc[name]["type"] == option["type"], name
            assert doc[name].get("default") == option.get("default"), name
            assert doc[name].get("choices") == option.get("choices"), name
            assert doc[name].get("required", False) == option.get("required", False), name
            assert doc[name].get("elements") == option.get("elements"), name
        return spec

    return check


@pytest.fixture
def h100_exporter_gpu() -> dict[str, Any]:
    """The H100 of the h100-80gb-hbm3x1_*_nvidia-gpu-exporter captures, as gpu_facts reports it."""
    return {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "pci_bus_id": "00000000:00:09.0",
        "memory_total_mib": 81559,
        "compute_capability": "9.0",
        "compute_capability_source": "nvidia-smi",
        "mig_mode": "Disabled",
    }
