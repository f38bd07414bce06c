"""The llmfleet_gpu facts schema: what the gpu_facts module writes is what the planner reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import facts_from_texts
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_schema import (
    GpuFactsError,
    MigDevice,
    read_gpu_facts,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import profile_from_dict
from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_plan import INVALID_INPUT, plan_vllm

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "nvidia-smi"
MODELS = Path(__file__).resolve().parents[4] / "models"


def test_facts_read_back_as_written():
    written = facts_from_texts(
        [
            (FIXTURES / name).read_text()
            for name in ("h200x1-mig_table_nvidia-gpu-exporter.txt", "h200x1-mig_L_nvidia-gpu-exporter.txt")
        ]
    )
    gpus, devices = read_gpu_facts(written.as_dict())
    assert gpus == written.gpus and devices == written.mig_devices
    assert gpus[0].mig and gpus[0].memory_mib == gpus[0].memory_total_mib


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        ({"gpus": ["not a gpu"]}, "gpus[0] is not a mapping: 'not a gpu'"),
        ({"gpus": [{"name": "H100"}]}, "gpus[0].index is missing"),
        (
            {"gpus": [{"index": 0, "memory_total_mib": "80GB"}]},
            "gpus[0].memory_total_mib is '80GB', expected a whole number",
        ),
        (
            {"gpus": [{"index": 0, "mig_mode": "on"}]},
            "gpus[0].mig_mode is 'on', expected one of Enabled, Disabled",
        ),
        ({"gpus": [{"index": 0, "compute_capability": "sm90"}]}, "gpus[0].compute_capability is 'sm90'"),
        ({"mig_devices": [{"gpu_index": True}]}, "mig_devices[0].gpu_index is True, expected a whole number"),
        ({"gpus": {"index": 0}}, "gpus is {'index': 0}, expected a list"),
        ({"interconnect": "infiniband"}, "interconnect is 'infiniband', expected one of nvlink"),
    ],
)
def test_facts_that_do_not_fit_name_the_key_and_the_value(facts, message):
    with pytest.raises(GpuFactsError) as caught:
        read_gpu_facts(facts)
    assert message in str(caught.value)


def test_a_mig_device_without_memory_is_sized_by_its_profile():
    assert MigDevice(gpu_index=0, profile="3g.40gb").memory_mib == 40_000
    assert MigDevice(gpu_index=0, profile="3g.40gb", memory_total_mib=40448).memory_mib == 40448
    assert MigDevice(gpu_index=0).memory_mib == 0


def test_the_planner_refuses_facts_that_do_not_fit_and_says_why():
    tiny = profile_from_dict(yaml.safe_load((MODELS / "llmfleet-tiny.yml").read_text()))
    plan = plan_vllm({"gpus": [{"index": 0, "memory_total_mib": "80GB"}]}, tiny, host="gpu7")
    assert plan.host == "gpu7" and plan.reason_codes == [INVALID_INPUT]
    assert plan.reasons == [
        "unreadable GPU facts: gpus[0].memory_total_mib is '80GB', expected a whole number"
    ]
