"""The vLLM planner: layouts, the memory model against the vendor's figures, refusals, argv and env."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    GB,
    GIB,
    MIB,
    ParallelLayout,
    profile_from_dict,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.parallel_layouts import (
    candidate_layouts,
    layout_problem,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_overrides import (
    OverrideError,
    Overrides,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.plan_result import (
    COMPUTE_CAPABILITY,
    CONTEXT_TOO_LONG,
    CPU_NOT_SERVABLE,
    GPU_DISCOVERY,
    INSUFFICIENT_MEMORY,
    INVALID_INPUT,
    MIG_TOO_SMALL,
    MIXED_GPUS,
    NO_DRIVER,
    NO_GPU_LAYOUT,
    REFUSAL_KINDS,
    UNSUPPORTED_LAYOUT,
    VLLM_TOO_OLD,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_command import (
    PLANNED_FLAGS,
    engine_timeout_s,
)
from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_plan import plan_vllm

HERE = Path(__file__).resolve().parent
MODELS = HERE.parents[3] / "models"
CASES = yaml.safe_load((HERE / "vllm_plan_cases.yml").read_text())


def profile(name: str, **changes: Any):
    data = yaml.safe_load((MODELS / f"{name}.yml").read_text())
    data.update(changes)
    return profile_from_dict(data)


M2 = profile("minimax-m2")
QWEN = profile("qwen3-8b")
TINY = profile("llmfleet-tiny")
PROFILES = {"minimax-m2": M2, "qwen3-8b": QWEN, "llmfleet-tiny": TINY}


def facts(
    count: int,
    mib: int = 81559,
    name: str = "NVIDIA H100 80GB HBM3",
    cc: str | None = "9.0",
    interconnect: str = "nvlink",
    mig: str = "Disabled",
) -> dict[str, Any]:
    return {
        "count": count,
        "gpus": [
            {
                "index": i,
                "name": name,
                "uuid": f"GPU-{i:08d}-0000-0000-0000-000000000001",
                "pci_bus_id": f"00000000:{i + 16:02X}:00.0",
                "memory_total_mib": mib,
                "compute_capability": cc,
                "compute_capability_source": "nvidia-smi" if cc else None,
                "mig_mode": mig,
            }
            for i in range(count)
        ],
        "mig_devices": [],
        "driver_version": "570.133.20",
        "cuda_version": "12.8",
        "interconnect": interconnect if count > 1 else "none",
        "nvswitch": count == 8,
        "source": ["test"],
    }


# ---- the vendor's figures (±25%) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "mib", "name", "vendor_tokens"),
    [
        # "4 x 96 GB GPUs give about 400K tokens": RTX PRO 6000 Blackwell (97887 MiB), and 96 GB exactly
        (4, 97887, "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", 400_000),
        (4, 96 * GB // MIB, "96 GB GPU", 400_000),
        (4, 97871, "NVIDIA H20", 400_000),
        # "8 x 144 GB GPUs give about 3M": H200 (143771 MiB), and 144 GB exactly
        (8, 143771, "NVIDIA H200", 3_000_000),
        (8, 144 * GB // MIB, "144 GB GPU", 3_000_000),
    ],
)
def test_vendor_kv_figures_hold_within_25_percent(count, mib, name, vendor_tokens):
    plan = plan_vllm(facts(count, mib, name), M2, host="h")
    assert plan.fits, plan.reasons
    assert 0.75 * vendor_tokens <= plan.kv_cache_tokens <= 1.25 * vendor_tokens, plan.kv_cache_tokens
    assert plan.max_model_len == 196_608  # one sequence holds at most 196,608 tokens
    assert plan.layout == ("tp4" if count == 4 else "tp8-ep")


def test_memory_model_by_hand_for_8x_h200():
    plan = plan_vllm(facts(8, 143771, "NVIDIA H200"), M2)
    budget = 143771 * MIB * 0.90
    weights = M2.weights_bytes / 8  # TP8 + EP: attention and experts both split 8 ways
    kv = budget - weights - 6 * GIB
    assert plan.weights_gib_per_gpu == pytest.approx(weights / GIB, abs=0.02)
    assert plan.kv_cache_gib_per_gpu == pytest.approx(kv / GIB, abs=0.02)
    # each GPU holds 1 of the 8 KV heads of every token
    assert plan.kv_cache_bytes_per_token == 253_952
    assert plan.kv_cache_tokens == pytest.approx(kv * 8 / 253_952, rel=0.001)


def test_data_parallel_replicas_split_the_kv_tokens():
    plan = plan_vllm(facts(8), M2, {"layout": "tp4-ep-dp2"})
    assert plan.data_parallel_size == 2
    assert plan.kv_cache_tokens == 2 * plan.kv_cache_tokens_per_replica
    # experts are spread over all 8 GPUs, attention only over the 4 of a replica
    dense = M2.weights_bytes - M2.expert_weights_bytes
    assert plan.weights_gib_per_gpu == pytest.approx(
        (dense / 4 + M2.expert_weights_bytes / 8) / GIB, abs=0.02
    )


# ---- MiniMax-M2 never runs pure TP8 ---------------------------------------------------------------


@pytest.mark.parametrize("count", range(0, 17))
@pytest.mark.parametrize(
    "overrides", [{}, {"allow_gpu_subset": True}, {"layout": "tp8", "allow_gpu_subset": True}]
)
def test_minimax_never_gets_pure_tp8(count, overrides):
    for mib in (46068, 81559, 143771, 183359):
        plan = plan_vllm(facts(count, mib), M2, overrides)
        layouts = [(plan.tensor_parallel_size, plan.enable_expert_parallel)] + [
            (a["tensor_parallel_size"], a["enable_expert_parallel"]) for a in plan.alternatives
        ]
        assert (8, False) not in layouts
        if plan.fits:
            args = plan.vllm_args
            if args[args.index("--tensor-parallel-size") + 1] == "8":
                assert "--enable-expert-parallel" in args


def test_tp8_is_refused_by_the_rules_even_if_a_profile_lists_it():
    data = yaml.safe_load((MODELS / "minimax-m2.yml").read_text())
    data["layouts"].append("tp8")
    data["refused_layouts"] = []
    sneaky = profile_from_dict(data)
    assert "192" in (layout_problem(sneaky, ParallelLayout(tp=8)) or "")
    assert ParallelLayout(tp=8) not in candidate_layouts(sneaky, 8)
    assert plan_vllm(facts(8), sneaky).layout == "tp8-ep"


def test_generic_moe_layouts_avoid_tp_that_breaks_the_fp8_blocks():
    data = yaml.safe_load((MODELS / "minimax-m2.yml").read_text())
    del data["layouts"], data["refused_layouts"]
    generic = profile_from_dict(data)
    names = [x.name for x in candidate_layouts(generic, 8)]
    assert "tp8" not in names
    assert "tp8-ep" in names and "tp4-ep-dp2" in names and "dp8-ep" in names


# ---- data-driven cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_cases(case):
    g = case["gpus"]
    host_facts = facts(g["count"], g.get("mib", 0), g.get("name", "GPU"), g.get("cc"))
    plan = plan_vllm(host_facts, PROFILES[case["model"]], case.get("overrides"), host=case["id"])
    expect = case["expect"]
    assert plan.fits is expect["fits"], plan.reasons
    assert plan.host == case["id"]
    if plan.fits:
        assert plan.reasons == [] and plan.reason_codes == []
        assert plan.vllm_args
    else:
        assert plan.reasons, "a refusal must say why"
        assert sorted(plan.reason_codes) == sorted(expect["codes"])
        assert plan.vllm_args == []
    for key in ("layout", "max_model_len", "gpus_used", "max_num_seqs", "suggested_max_model_len"):
        if key in expect:
            assert getattr(plan, key) == expect[key], key
    if "reason" in expect:
        assert any(expect["reason"] in r for r in plan.reasons), plan.reasons
    if "warning" in expect:
        assert any(expect["warning"] in w for w in plan.warnings), plan.warnings
    if "alternatives" in expect:
        assert [a["layout"] for a in plan.alternatives] == expect["alternatives"]
    if "suggested_gpu_counts" in expect:
        assert set(expect["suggested_gpu_counts"]) <= set(plan.suggested_gpu_counts), plan.suggestions
    for name, value in expect.get("env", {}).items():
        assert plan.env.get(name) == value
    if "args" in expect:
        joined = " ".join(plan.vllm_args)
        for a, b in zip(expect["args"][::2], expect["args"][1::2], strict=True):
            assert f"{a} {b}" in joined


def test_every_refusal_kind_is_covered_by_a_test():
    covered = {code for case in CASES for code in case["expect"].get("codes", [])}
    covered |= {MIXED_GPUS, MIG_TOO_SMALL, INVALID_INPUT, GPU_DISCOVERY, NO_DRIVER}  # tested below
    assert covered == set(REFUSAL_KINDS)
    assert set(REFUSAL_KINDS) == {
        INVALID_INPUT,
        NO_GPU_LAYOUT,
        UNSUPPORTED_LAYOUT,
        INSUFFICIENT_MEMORY,
        CONTEXT_TOO_LONG,
        COMPUTE_CAPABILITY,
        MIXED_GPUS,
        MIG_TOO_SMALL,
        CPU_NOT_SERVABLE,
        VLLM_TOO_OLD,
        GPU_DISCOVERY,
        NO_DRIVER,
    }


# ---- plan details ----------------------------------------------------------------------------------------


def test_vllm_args_of_the_reference_deployment():
    plan = plan_vllm(facts(8), M2)
    assert plan.vllm_args == [
        "--served-model-name",
        "MiniMaxAI/MiniMax-M2",
        "--tensor-parallel-size",
        "8",
        "--enable-expert-parallel",
        "--max-model-len",
        "196608",
        "--gpu-memory-utilization",
        "0.9",
        "--max-num-seqs",
        "256",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "minimax_m2",
        "--reasoning-parser",
        "minimax_m2_append_think",
        "--trust-remote-code",
    ]
    for flag in ("--model", "--host", "--port", "--api-key"):
        assert flag not in plan.vllm_args
    assert plan.device == "cuda" and plan.gpu_count == 8 and plan.gpus_used == 8
    assert plan.gpu_memory_mib == 81559


def test_four_gpus_get_tp4_without_expert_parallel():
    plan = plan_vllm(facts(4, 143771, "NVIDIA H200"), M2)
    assert plan.vllm_args[plan.vllm_args.index("--tensor-parallel-size") + 1] == "4"
    assert "--enable-expert-parallel" not in plan.vllm_args
    assert "--data-parallel-size" not in plan.vllm_args


def test_selectable_8_gpu_layouts_emit_their_flags():
    dp2 = plan_vllm(facts(8), M2, {"layout": "tp4-ep-dp2"}).vllm_args
    assert (
        " ".join(dp2).count("--tensor-parallel-size 4 --data-parallel-size 2 --enable-expert-parallel") == 1
    )
    dp8 = plan_vllm(facts(8), M2, {"layout": "dp8-ep"}).vllm_args
    assert "--tensor-parallel-size 1 --data-parallel-size 8 --enable-expert-parallel" in " ".join(dp8)


def test_reasoning_parser_override_and_served_name():
    plan = plan_vllm(facts(8), M2, {"reasoning_parser": "minimax_m2", "served_model_name": "m2"})
    assert "--reasoning-parser minimax_m2 " in " ".join(plan.vllm_args) + " "
    assert plan.vllm_args[:2] == ["--served-model-name", "m2"]


def test_fp8_kv_cache_doubles_the_tokens():
    auto = plan_vllm(facts(8), M2)
    fp8 = plan_vllm(facts(8), M2, {"kv_cache_dtype": "fp8"})
    assert fp8.kv_cache_tokens == pytest.approx(2 * auto.kv_cache_tokens, rel=0.001)
    assert "--kv-cache-dtype fp8" in " ".join(fp8.vllm_args)
    assert "--kv-cache-dtype" not in auto.vllm_args


def test_start_timeouts_are_sized_from_the_weights():
    plan = plan_vllm(facts(8), M2)
    # 214 GiB at a conservative 80 MiB/s is over 45 minutes; vLLM's 600 s default would kill it
    assert plan.engine_ready_timeout_s > 45 * 60
    assert plan.env["VLLM_ENGINE_READY_TIMEOUT_S"] == str(plan.engine_ready_timeout_s)
    assert plan.start_timeout_s > plan.engine_ready_timeout_s
    tiny = plan_vllm(facts(0), TINY)
    assert 600 <= tiny.engine_ready_timeout_s <= 660
    assert engine_timeout_s(100 * 80 * MIB, 80) == 600 + 120  # 100 s of loading, rounded to minutes
    slow = plan_vllm(facts(8), M2, {"load_rate_mib_s": 40})
    assert slow.engine_ready_timeout_s > plan.engine_ready_timeout_s


def test_cpu_plan_for_the_tiny_model():
    plan = plan_vllm({"count": 0, "gpus": [], "mig_devices": [], "interconnect": "none"}, TINY, host="cpu1")
    assert plan.fits and plan.device == "cpu" and plan.layout == "cpu"
    assert plan.gpu_count == 0
    assert plan.max_model_len == 131072
    assert "--gpu-memory-utilization" not in plan.vllm_args
    assert "--tensor-parallel-size" not in plan.vllm_args
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # 1 GiB / (2 x 1 layer x 2 KV heads x 64 x 4 bytes) = 1,048,576 tokens
    assert plan.kv_cache_tokens == GIB // 1024
    assert "--tool-call-parser minimax_m2" in " ".join(plan.vllm_args)
    assert "--reasoning-parser minimax_m2_append_think" in " ".join(plan.vllm_args)
    assert plan.vllm_args[:2] == ["--served-model-name", "llmfleet/tiny"]
    assert "--trust-remote-code" not in plan.vllm_args


def test_cpu_plan_context_and_space():
    plan = plan_vllm(facts(0), TINY, {"max_model_len": 512, "cpu_kvcache_space_gib": 2})
    assert plan.fits and plan.max_model_len == 512 and plan.env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    big = profile("llmfleet-tiny", max_model_len=4_000_000)
    refused = plan_vllm(facts(0), big, {"max_model_len": 4_000_000})
    assert refused.reason_codes == [CONTEXT_TOO_LONG]
    assert "set cpu_kvcache_space_gib: 4 in llmfleet_plan_overrides" in refused.suggestions


def test_cpu_refusals_head_size_format_and_size():
    odd = profile("llmfleet-tiny", config={**TINY.config, "head_dim": 48})
    plan = plan_vllm(facts(0), odd)
    assert plan.reason_codes == [CPU_NOT_SERVABLE] and "head size 48" in plan.reasons[0]
    fp8 = profile("llmfleet-tiny", weight_format="fp8")
    assert "cannot load" in plan_vllm(facts(0), fp8).reasons[0]
    big = profile("llmfleet-tiny", weights_gib=12)
    plan = plan_vllm(facts(0), big)
    assert plan.reason_codes == [CPU_NOT_SERVABLE] and "cpu_max_weights_gib" in plan.reasons[0]
    assert plan_vllm(facts(0), big, {"cpu_max_weights_gib": 16}).fits


def test_mixed_gpu_models_are_refused_and_indices_pick_one_kind():
    host = facts(8, 143771, "NVIDIA H200")
    for gpu in host["gpus"][4:]:
        gpu["name"] = "NVIDIA H100 80GB HBM3"
        gpu["memory_total_mib"] = 81559
    plan = plan_vllm(host, M2)
    assert plan.reason_codes == [MIXED_GPUS]
    assert "4 x NVIDIA H200 (GPU 0,1,2,3)" in plan.reasons[0] and "gpu_indices" in plan.reasons[0]
    picked = plan_vllm(host, M2, {"gpu_indices": [0, 1, 2, 3]})
    assert picked.fits and picked.layout == "tp4" and picked.gpu_indices == [0, 1, 2, 3]
    assert picked.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    wrong = plan_vllm(host, M2, {"gpu_indices": [7, 8, 9]})
    assert wrong.reason_codes == [INVALID_INPUT] and "8,9" in wrong.reasons[0]


def mig_host(slices: list[tuple[int, str, int]]) -> dict[str, Any]:
    host = facts(len({s[0] for s in slices}) or 1, 81559, mig="Enabled")
    host["mig_devices"] = [
        {
            "gpu_index": gpu,
            "device_index": n,
            "gpu_instance_id": n + 1,
            "compute_instance_id": 0,
            "profile": prof,
            "uuid": f"MIG-{gpu}-{n}",
            "memory_total_mib": mib,
        }
        for n, (gpu, prof, mib) in enumerate(slices)
    ]
    return host


def test_mig_slices_too_small_for_minimax():
    host = mig_host([(g, "3g.40gb", 40448) for g in range(8) for _ in range(2)])
    plan = plan_vllm(host, M2)
    assert plan.reason_codes == [MIG_TOO_SMALL]
    assert "40,448 MiB (3g.40gb)" in plan.reasons[0] and "-mig 0" in plan.reasons[0]


def test_mig_enabled_without_devices():
    plan = plan_vllm(mig_host([]), QWEN)
    assert plan.reason_codes == [MIG_TOO_SMALL] and "no MIG devices exist" in plan.reasons[0]


def test_mig_slice_large_enough_for_a_small_model():
    host = mig_host([(0, "1g.10gb", 9856), (0, "3g.40gb", 40448)])
    plan = plan_vllm(host, QWEN)
    assert plan.fits and plan.layout == "tp1" and plan.gpus_used == 1
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "MIG-0-1"
    assert plan.gpu_memory_mib == 40448


def test_mig_gpus_are_left_out_when_whole_gpus_exist():
    host = facts(5)
    host["gpus"][4]["mig_mode"] = "Enabled"
    plan = plan_vllm(host, M2)
    assert plan.fits and plan.layout == "tp4" and plan.gpu_indices == [0, 1, 2, 3]
    assert any("MIG" in w for w in plan.warnings)


def test_compute_capability_unknown_is_a_warning_not_a_refusal():
    plan = plan_vllm(facts(8, cc=None), M2)
    assert plan.fits and any("compute capability" in w for w in plan.warnings)


def test_compute_capability_from_the_name_table_is_reported():
    host = facts(8)
    for gpu in host["gpus"]:
        gpu["compute_capability_source"] = "name-table"
    assert any("inferred from the GPU name" in w for w in plan_vllm(host, M2).warnings)


def test_pcie_tensor_parallel_is_a_warning():
    plan = plan_vllm(facts(4, 97887, "NVIDIA RTX PRO 6000 Blackwell", "12.0", interconnect="pcie"), M2)
    assert plan.fits and any("PCIe" in w for w in plan.warnings)


def test_insufficient_memory_says_what_would_fit():
    plan = plan_vllm(facts(4, 46068, "NVIDIA L40S", "8.9"), M2)
    assert plan.reason_codes == [INSUFFICIENT_MEMORY]
    reason = plan.reasons[0]
    assert "4 x NVIDIA L40S" in reason and "missing" in reason
    assert any(s.startswith("8 GPUs of this kind would fit (tp8-ep") for s in plan.suggestions)


def test_higher_utilization_is_suggested_when_it_would_fit():
    plan = plan_vllm(facts(1, 23028, "NVIDIA A10G", "8.6"), QWEN, {"gpu_memory_utilization": 0.80})
    assert plan.reason_codes == [INSUFFICIENT_MEMORY]
    # weights 15.3 GiB + 4 GiB reserve + 4,096 tokens of KV cache need 89% of the A10G's 22.5 GiB
    assert "set gpu_memory_utilization: 0.89 in llmfleet_plan_overrides" in plan.suggestions
    # on a 16 GiB GPU even 95% is too little: no such suggestion
    too_small = plan_vllm(facts(1, 16384, "GPU16", "8.6"), QWEN)
    assert too_small.reason_codes == [INSUFFICIENT_MEMORY]
    assert not any(s.startswith("set gpu_memory_utilization") for s in too_small.suggestions)


def test_tight_memory_refuses_below_the_minimum_context():
    plan = plan_vllm(facts(4, 68000, "GPU", "9.0"), M2)
    assert plan.reason_codes == [INSUFFICIENT_MEMORY]
    assert "minimum useful context" in plan.reasons[0]


def test_max_model_len_auto():
    new = plan_vllm(facts(4, 81559), M2, {"max_model_len_auto": True, "vllm_version": "0.12.0"})
    assert new.max_model_len_arg == "auto" and "--max-model-len auto" in " ".join(new.vllm_args)
    assert new.max_model_len > 0  # the planner's own estimate is still there
    old = plan_vllm(facts(4, 81559), M2, {"max_model_len_auto": True, "vllm_version": "0.11.2"})
    assert old.max_model_len_arg == str(old.max_model_len) and any("0.12.0" in w for w in old.warnings)
    unknown = plan_vllm(facts(4, 81559), M2, {"max_model_len_auto": True})
    assert unknown.max_model_len_arg != "auto"
    capped = plan_vllm(
        facts(4, 81559), M2, {"max_model_len_auto": True, "vllm_version": "0.13", "max_model_len": 65536}
    )
    assert capped.max_model_len_arg == "65536"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be a number between"),
        ({"gpu_memory_utilization": "lots"}, "gpu_memory_utilization"),
        ({"max_model_len": 1.5}, "whole number"),
        ({"layout": "tp-eight"}, "cannot read"),
        ({"colour": "blue"}, "unknown overrides ['colour']"),
        ({"allow_gpu_subset": "maybe"}, "true or false"),
        ({"gpu_indices": "a,b"}, "whole numbers"),
        ({"gpu_indices": [0, 0]}, "twice"),
        ({"extra_args": "--enforce-eager"}, "list of strings"),
        ({"kv_cache_dtype": "int3"}, "unknown KV cache dtype"),
    ],
)
def test_invalid_overrides_are_refusals(overrides, message):
    plan = plan_vllm(facts(8), M2, overrides)
    assert not plan.fits and plan.reason_codes == [INVALID_INPUT]
    assert message in plan.reasons[0]


def test_overrides_accept_strings_from_extra_vars_and_none_as_unset():
    opts = Overrides.from_dict(
        {"gpu_memory_utilization": "0.85", "max_num_seqs": "64", "allow_gpu_subset": "yes", "layout": None}
    )
    assert (opts.gpu_memory_utilization, opts.max_num_seqs, opts.allow_gpu_subset, opts.layout) == (
        0.85,
        64,
        True,
        None,
    )
    assert Overrides.from_dict({"gpu_indices": "0, 1"}).gpu_indices == (0, 1)
    with pytest.raises(OverrideError):
        Overrides.from_dict(["not a mapping"])  # type: ignore[arg-type]


def test_missing_or_unreadable_facts_are_refusals():
    assert plan_vllm(None, M2).reason_codes == [INVALID_INPUT]
    failed = plan_vllm(None, M2, discovery_error="nvidia-smi: driver/library version mismatch")
    assert failed.reason_codes == [GPU_DISCOVERY] and "version mismatch" in failed.reasons[0]
    assert plan_vllm({"gpus": ["not a gpu"]}, M2).reason_codes == [INVALID_INPUT]
    no_memory = facts(8)
    for gpu in no_memory["gpus"]:
        gpu["memory_total_mib"] = None
    plan = plan_vllm(no_memory, M2)
    assert plan.reason_codes == [INVALID_INPUT] and "memory" in plan.reasons[0]
    no_memory["gpus"][0]["memory_total_mib"] = 81559  # one GPU's memory known: assumed for all
    partly = plan_vllm(no_memory, M2)
    assert partly.fits and partly.gpu_memory_mib == 81559 and any("only 1 of 8" in w for w in partly.warnings)


def test_extra_args_come_last():
    data = copy.deepcopy(yaml.safe_load((MODELS / "minimax-m2.yml").read_text()))
    data["extra_args"] = ["--enable-prefix-caching"]
    plan = plan_vllm(facts(8), profile_from_dict(data), {"extra_args": ["--load-format", "fastsafetensors"]})
    assert plan.vllm_args[-3:] == ["--enable-prefix-caching", "--load-format", "fastsafetensors"]


def test_refusal_still_reports_the_host_and_the_required_keys():
    plan = plan_vllm(facts(6), M2, host="odd-box").as_dict()
    for key in (
        "host",
        "fits",
        "reasons",
        "gpu_count",
        "gpu_memory_mib",
        "tensor_parallel_size",
        "data_parallel_size",
        "pipeline_parallel_size",
        "enable_expert_parallel",
        "kv_cache_tokens",
        "max_model_len",
        "vllm_args",
    ):
        assert key in plan
    assert plan["host"] == "odd-box" and plan["fits"] is False and plan["reasons"]
    assert plan["gpu_count"] == 6 and plan["suggested_gpu_counts"] == [4, 8]


PINS = {"cuda": "0.33.0", "cpu": "0.32.0"}


def test_a_bare_gpu_host_is_refused_until_its_driver_answers():
    bare = plan_vllm(facts(0), M2, vllm_versions=PINS, nvidia_pci_gpus=8)
    assert not bare.fits
    assert bare.reason_codes == [NO_DRIVER]
    assert "8 NVIDIA GPU(s) on the PCI bus" in bare.reasons[0]
    assert "nvidia_driver" in bare.reasons[0]
    with_driver = plan_vllm(facts(8), M2, vllm_versions=PINS, nvidia_pci_gpus=8)
    assert with_driver.fits and with_driver.layout == "tp8-ep"


def test_a_cpu_host_without_nvidia_devices_plans_for_the_cpu_build():
    plan = plan_vllm(facts(0), TINY, vllm_versions=PINS, nvidia_pci_gpus=0)
    assert plan.fits and plan.device == "cpu"
    assert plan.vllm_version == "0.32.0"


def test_the_plan_carries_the_release_its_device_gets_and_the_port():
    plan = plan_vllm(
        facts(4, 97887, "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "12.0"),
        M2,
        vllm_versions=PINS,
        port=8001,
    )
    assert (plan.device, plan.vllm_version, plan.port) == ("cuda", "0.33.0", 8001)
    assert plan.fits


def test_the_pinned_release_is_checked_against_the_model_minimum():
    plan = plan_vllm(facts(8), M2, vllm_versions={"cuda": "0.10.2", "cpu": "0.32.0"})
    assert not plan.fits
    assert plan.reason_codes == [VLLM_TOO_OLD]
    assert "llmfleet_vllm_version" in plan.reasons[0]
    assert plan_vllm(facts(0), TINY, vllm_versions={"cuda": "0.10.2", "cpu": "0.32.0"}).fits


def test_the_override_wins_over_the_pinned_release():
    plan = plan_vllm(facts(8), M2, {"vllm_version": "0.34.1"}, vllm_versions=PINS)
    assert plan.vllm_version == "0.34.1"


def test_every_flag_a_plan_decides_is_one_the_service_refuses_by_hand():
    """PLANNED_FLAGS is what the service checks extra arguments against: no planned flag may escape it."""
    emitted = set()
    for case in CASES:
        g = case["gpus"]
        plan = plan_vllm(
            facts(g["count"], g.get("mib", 0), g.get("name", "GPU"), g.get("cc")),
            PROFILES[case["model"]],
            case.get("overrides"),
        )
        emitted |= {arg for arg in plan.vllm_args if arg.startswith("--")}
    fp8_kv = plan_vllm(facts(8), M2, {"kv_cache_dtype": "fp8"})
    emitted |= {arg for arg in fp8_kv.vllm_args if arg.startswith("--")}
    assert "--kv-cache-dtype" in emitted
    profile_flags = {"--trust-remote-code"}
    assert emitted - profile_flags <= PLANNED_FLAGS
