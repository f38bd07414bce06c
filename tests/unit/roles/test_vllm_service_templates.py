"""The vllm_service unit and environment file, rendered with the role's real defaults for a CUDA and a CPU plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.service_args import start_limit_interval_s

CUDA_PLAN = {
    "fits": True,
    "device": "cuda",
    "served_model_name": "MiniMaxAI/MiniMax-M2",
    "vllm_args": [
        "--served-model-name",
        "MiniMaxAI/MiniMax-M2",
        "--tensor-parallel-size",
        "8",
        "--enable-expert-parallel",
        "--tool-call-parser",
        "minimax_m2",
    ],
    "env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "VLLM_ENGINE_READY_TIMEOUT_S": "2400"},
    "start_timeout_s": 2700,
}
CPU_PLAN = {
    "fits": True,
    "device": "cpu",
    "served_model_name": "llmfleet/tiny",
    "vllm_args": ["--served-model-name", "llmfleet/tiny", "--max-model-len", "1024"],
    "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENGINE_READY_TIMEOUT_S": "600"},
    "start_timeout_s": 900,
}
HOST = {"llmfleet_model_path": "/srv/models/m"}


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every Key=value of a unit file, values in order, keyed by key."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def unit(render_template: Callable[..., str]) -> Callable[..., dict[str, list[str]]]:
    def render(plan: dict[str, Any], **host_vars: Any) -> dict[str, list[str]]:
        return unit_settings(
            render_template("vllm_service", "vllm.service.j2", llmfleet_plan=plan, **HOST, **host_vars)
        )

    return render


@pytest.fixture
def env_file(render_template: Callable[..., str]) -> Callable[..., dict[str, str]]:
    def render(plan: dict[str, Any], **host_vars: Any) -> dict[str, str]:
        text = render_template("vllm_service", "vllm.env.j2", llmfleet_plan=plan, **HOST, **host_vars)
        return dict(
            line.partition("=")[::2] for line in text.splitlines() if line and not line.startswith("#")
        )

    return render


def test_gpu_plan_lists_the_nvidia_devices_beside_protect_clock(unit):
    settings = unit(CUDA_PLAN)
    assert settings["DeviceAllow"] == ["char-nvidia* rw"]
    assert settings["ProtectClock"] == ["yes"]
    assert "PrivateDevices" not in settings and "DevicePolicy" not in settings


def test_cpu_plan_has_no_device_list(unit):
    assert "DeviceAllow" not in unit(CPU_PLAN)


def test_extra_devices_are_allowed_on_both_plans(unit):
    extra = ["char-infiniband_verbs rw"]
    assert unit(CUDA_PLAN, vllm_service_device_allow=extra)["DeviceAllow"] == ["char-nvidia* rw", *extra]
    assert unit(CPU_PLAN, vllm_service_device_allow=extra)["DeviceAllow"] == extra


def test_gpu_plan_starts_after_persistenced(unit):
    settings = unit(CUDA_PLAN)
    for key in ("After", "Wants"):
        assert settings[key] == ["network-online.target nvidia-persistenced.service"]


@pytest.mark.parametrize(
    "host_vars",
    [
        {"nvidia_driver_result": {"fabricmanager": True}},
        {"ansible_facts": {"llmfleet_gpu": {"nvswitch": True}}},
    ],
    ids=["driver-role-installed-it", "gpus-report-nvswitch"],
)
def test_nvswitch_host_starts_after_fabric_manager(unit, host_vars):
    settings = unit(CUDA_PLAN, **host_vars)
    for key in ("After", "Wants"):
        assert settings[key] == [
            "network-online.target nvidia-persistenced.service nvidia-fabricmanager.service"
        ]


def test_driver_role_decision_wins_over_the_gpu_facts(unit):
    settings = unit(
        CUDA_PLAN,
        nvidia_driver_result={"fabricmanager": False},
        ansible_facts={"llmfleet_gpu": {"nvswitch": True}},
    )
    assert "nvidia-fabricmanager.service" not in settings["After"][0]


def test_cpu_plan_names_no_nvidia_unit(unit):
    settings = unit(CPU_PLAN, nvidia_driver_result={"fabricmanager": True})
    assert settings["After"] == settings["Wants"] == ["network-online.target"]


def test_visible_devices_come_with_pci_bus_order(env_file):
    env = env_file(CUDA_PLAN)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_hand_set_visible_devices_get_the_order_too(env_file):
    env = env_file(
        CPU_PLAN, vllm_service_env={"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    )
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_no_device_order_without_visible_devices(env_file):
    env = env_file(CPU_PLAN)
    assert "CUDA_DEVICE_ORDER" not in env and "CUDA_VISIBLE_DEVICES" not in env
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"


@pytest.mark.parametrize("plan", [CUDA_PLAN, CPU_PLAN], ids=["cuda", "cpu"])
def test_start_limit_comes_from_the_plan(unit, plan):
    settings = unit(plan)
    burst = int(settings["StartLimitBurst"][0])
    restart = int(settings["RestartSec"][0])
    stop = int(settings["TimeoutStopSec"][0])
    assert int(settings["StartLimitIntervalSec"][0]) == start_limit_interval_s(
        plan["start_timeout_s"], restart, stop, burst
    )
    assert int(settings["StartLimitIntervalSec"][0]) >= burst * plan["start_timeout_s"]


def test_a_set_start_limit_interval_is_kept(unit):
    assert unit(CUDA_PLAN, vllm_service_start_limit_interval_s=7200)["StartLimitIntervalSec"] == ["7200"]


def test_exec_start_runs_the_release_with_the_planned_flags(unit):
    [exec_start] = unit(CUDA_PLAN, vllm_service_extra_args=["--seed", "7"])["ExecStart"]
    assert exec_start.startswith(
        "/opt/llmfleet/current/bin/python -m vllm.entrypoints.openai.api_server --model /srv/models/m"
    )
    assert exec_start.endswith("--tool-call-parser minimax_m2 --seed 7")
