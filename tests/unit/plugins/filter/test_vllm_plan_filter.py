"""The vllm_plan, model_profile and vllm_plan_table filters, and planning from real nvidia-smi captures."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.filter import vllm_plan as plugin
from ansible_collections.llmfleet.serve.plugins.module_utils.gpu_facts_merge import facts_from_texts

REPO = Path(__file__).resolve().parents[4]
CAPTURES = REPO / "tests" / "fixtures" / "nvidia-smi"
EXAMPLE_INVENTORIES = REPO / "inventories" / "examples"

FILTERS = plugin.FilterModule().filters()
model_profile = FILTERS["model_profile"]
vllm_plan = FILTERS["vllm_plan"]
vllm_plan_table = FILTERS["vllm_plan_table"]
vllm_plan_collect = FILTERS["vllm_plan_collect"]


def capture_facts(*names: str, root: Path = CAPTURES) -> dict:
    return facts_from_texts([(root / n).read_text() for n in names]).as_dict()


# ---- model_profile ------------------------------------------------------------------------------


def test_models_dir_is_found_relative_to_the_plugin():
    assert plugin.MODELS_DIR == REPO / "models"
    shipped, sources = plugin.shipped_profiles()
    assert {"minimax-m2", "qwen3-8b", "llmfleet-tiny"} <= set(shipped)
    assert sources["minimax-m2"].endswith("models/minimax-m2.yml")


def test_model_profile_returns_the_normalised_profile():
    m2 = model_profile("minimax-m2")
    assert m2["served_model_name"] == "MiniMaxAI/MiniMax-M2"
    assert m2["num_layers"] == 62 and m2["num_kv_heads"] == 8 and m2["head_dim"] == 128
    assert m2["kv_bytes_per_token"] == 253_952
    assert 210 < m2["weights_gib"] < 216
    assert m2["tool_call_parser"] == "minimax_m2" and m2["reasoning_parser"] == "minimax_m2_append_think"
    assert m2["sampling"] == {"temperature": 1.0, "top_p": 0.95, "top_k": 20}
    assert m2["min_vllm_version"] == "0.11.1" and m2["min_compute_capability"] == "8.9"
    assert m2["modelscope_id"] == m2["huggingface_id"] == "MiniMaxAI/MiniMax-M2"
    assert m2["source"].endswith("minimax-m2.yml")
    assert model_profile("MiniMaxAI/MiniMax-M2")["name"] == "minimax-m2"


def test_model_profile_from_the_inventory():
    user = {"m2-lean": {"extends": "minimax-m2", "max_model_len": 131072, "reasoning_parser": "minimax_m2"}}
    lean = model_profile("m2-lean", user)
    assert lean["name"] == "m2-lean" and lean["max_model_len"] == 131072
    assert lean["reasoning_parser"] == "minimax_m2" and lean["source"].startswith("inventory")


def test_model_profile_with_the_real_config_json():
    config = {"num_hidden_layers": 31, "num_key_value_heads": 4}  # a hypothetical smaller variant
    changed = model_profile("minimax-m2", None, config)
    assert changed["num_layers"] == 31 and changed["num_kv_heads"] == 4
    assert changed["kv_bytes_per_token"] == 2 * 31 * 4 * 128 * 2
    assert changed["weights_bytes"] == model_profile("minimax-m2")["weights_bytes"]  # hand-written stays


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("llama-9000",), "no model profile named 'llama-9000'"),
        (("",), "expected a profile name"),
        (("bad", {"bad": {"num_layers": 1}}), "is missing"),
        (("minimax-m2", None, {"num_hidden_layers": "many"}), "'num_layers' is missing"),
    ],
)
def test_model_profile_errors(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        model_profile(*args)


# ---- vllm_plan ----------------------------------------------------------------------------------


def test_vllm_plan_takes_a_profile_dict_or_a_name():
    facts = capture_facts("h100-sxm-80gbx8_table_modal-gpu-glossary.txt")
    by_dict = vllm_plan(facts, model_profile("minimax-m2"), {}, host="n1")
    by_name = vllm_plan(facts, "minimax-m2", None, host="n1")
    assert by_dict == by_name
    assert by_dict["host"] == "n1" and by_dict["fits"] is True and by_dict["layout"] == "tp8-ep"
    user = {"m2-short": {"extends": "minimax-m2", "max_model_len": 32768}}
    assert vllm_plan(facts, "m2-short", profiles=user)["max_model_len"] == 32768


def test_vllm_plan_returns_refusals_and_raises_on_bad_profiles():
    refused = vllm_plan(capture_facts("l40sx1_table_nvidia-gpu-exporter.txt"), "minimax-m2", host="l40s")
    assert refused["fits"] is False and refused["reasons"] and refused["reason_codes"] == ["gpu_count"]
    with pytest.raises(AnsibleFilterError, match="unknown fields"):
        vllm_plan({}, {"name": "x", "colour": "blue"})
    with pytest.raises(AnsibleFilterError, match="profile must be a name or a mapping"):
        vllm_plan({}, 42)


def test_vllm_plan_passes_overrides():
    facts = capture_facts("h200x8_table_tufts-guides.txt")
    plan = vllm_plan(facts, "minimax-m2", {"layout": "tp4-ep-dp2", "max_num_seqs": 32}, host="h200")
    assert plan["layout"] == "tp4-ep-dp2" and plan["max_num_seqs"] == 32
    bad = vllm_plan(facts, "minimax-m2", {"gpu_memory_utilization": 2})
    assert bad["reason_codes"] == ["invalid_input"]


# ---- planning from real captures (the gpu_facts parser's output) --------------------------------


@pytest.mark.parametrize(
    ("captures", "layout", "tokens"),
    [
        (
            [
                "h100-sxm-80gbx8_table_modal-gpu-glossary.txt",
                "h100-sxm-80gbx8_topo_thunderkittens-issue-167.txt",
            ],
            "tp8-ep",
            None,
        ),
        (["h100-sxm-80gbx8_table_thamada-nvsim.txt"], "tp8-ep", None),
        # 8 x 141 GB H200: the vendor's "8 x 144 GB -> about 3M tokens"
        (["h200x8_table_tufts-guides.txt"], "tp8-ep", 3_000_000),
        (["b200x8_table_modal-gpu-glossary.txt"], "tp8-ep", None),
        (["rtx-6000-adax8_table_thamada-nvsim.txt"], "tp8-ep", None),
        (["a100-sxm4-80gbx4_table_thamada-nvsim.txt"], "tp4", None),
    ],
)
def test_minimax_fits_on_real_captures(captures, layout, tokens):
    plan = vllm_plan(capture_facts(*captures), "minimax-m2", host="x")
    assert plan["fits"] is True, plan["reasons"]
    assert plan["layout"] == layout
    assert not (plan["tensor_parallel_size"] == 8 and not plan["enable_expert_parallel"])
    if tokens:
        assert 0.75 * tokens <= plan["kv_cache_tokens"] <= 1.25 * tokens


@pytest.mark.parametrize(
    ("capture", "code"),
    [
        ("h100x8-mig-3g40gb_table_cloud-native-docs.txt", "mig_too_small"),
        ("h100x8-mig-mixed_table_cloud-native-docs.txt", "mig_too_small"),
        ("tesla-k80x4_qx-v10_openpai.xml", "compute_capability"),
        ("h100-nvlx2_table_thamada-nvsim.txt", "gpu_count"),
        ("rtx-pro-6000-blackwell-maxqx1_qx-v13_telegraf.xml", "gpu_count"),
        ("h20x8_topo_sglang-issue-24966.txt", "invalid_input"),  # topology alone: no memory
    ],
)
def test_minimax_refusals_on_real_captures(capture, code):
    plan = vllm_plan(capture_facts(capture), "minimax-m2", host="x")
    assert plan["fits"] is False and code in plan["reason_codes"] and plan["reasons"]


def test_qwen_on_one_mig_slice_of_a_real_capture():
    plan = vllm_plan(capture_facts("h200x1-mig_L_nvidia-gpu-exporter.txt"), "qwen3-8b")
    assert plan["fits"] is True and plan["gpus_used"] == 1
    assert plan["env"]["CUDA_VISIBLE_DEVICES"].startswith("MIG-")


def test_no_gpu_capture_gives_a_cpu_plan_for_the_tiny_model():
    plan = vllm_plan(facts_from_texts([]).as_dict(), "llmfleet-tiny", host="cpu")
    assert plan["fits"] is True and plan["device"] == "cpu"


@pytest.mark.parametrize(
    ("example", "layout", "tokens"),
    [("4x96g", "tp4", 400_000), ("8xh100", "tp8-ep", None), ("8xh20", "tp8-ep", None)],
)
def test_example_inventory_captures_plan_as_documented(example, layout, tokens):
    captures = sorted((EXAMPLE_INVENTORIES / example / "captures").iterdir())
    assert captures, f"inventories/examples/{example}/captures is empty"
    facts = facts_from_texts([p.read_text() for p in captures]).as_dict()
    assert facts["count"] == (4 if example == "4x96g" else 8)
    plan = vllm_plan(facts, "minimax-m2", host=example)
    assert plan["fits"] is True and plan["layout"] == layout
    if tokens:
        assert 0.75 * tokens <= plan["kv_cache_tokens"] <= 1.25 * tokens


# ---- vllm_plan_table ----------------------------------------------------------------------------


def test_table_shows_every_host_and_the_reasons_of_refusals():
    fit = vllm_plan(capture_facts("h200x8_table_tufts-guides.txt"), "minimax-m2", host="h200-a")
    refused = vllm_plan(capture_facts("h100-nvlx2_table_thamada-nvsim.txt"), "minimax-m2", host="nvl-b")
    cpu = vllm_plan(facts_from_texts([]).as_dict(), "llmfleet-tiny", host="cpu-c")
    lines = vllm_plan_table([fit, refused, cpu])
    assert lines[0].split() == ["host", "GPUs", "layout", "max", "context", "KV", "tokens", "verdict"]
    assert set(lines[1]) <= {"-", " "}
    row = next(line for line in lines if line.startswith("h200-a"))
    assert (
        "8 x NVIDIA H200" in row and "tp8-ep" in row and "196,608" in row and "3.17M" in row and "fits" in row
    )
    row = next(line for line in lines if line.startswith("nvl-b"))
    assert "REFUSED: gpu_count" in row
    assert any(line.startswith("nvl-b: MiniMax-M2 has no supported layout for 2 GPUs") for line in lines)
    row = next(line for line in lines if line.startswith("cpu-c"))
    assert "none (cpu)" in row and "131,072" in row and "fits" in row


def test_table_rejects_non_lists():
    with pytest.raises(AnsibleFilterError):
        vllm_plan_table({"host": "x"})


# ---- vllm_plan_collect and discovery failures --------------------------------------------------


def test_discovery_error_becomes_a_refusal_with_the_message():
    plan = vllm_plan(None, "minimax-m2", host="dead", discovery_error="the NVIDIA driver is not loaded")
    assert plan["fits"] is False and plan["reason_codes"] == ["gpu_discovery"]
    assert plan["reasons"] == ["GPU discovery failed: the NVIDIA driver is not loaded"]
    assert "?" in next(line for line in vllm_plan_table([plan]) if line.startswith("dead"))


def test_collect_keeps_hosts_without_a_plan():
    good = vllm_plan(capture_facts("h200x8_table_tufts-guides.txt"), "minimax-m2", host="a")
    hostvars = {"a": {"llmfleet_plan": good}, "b": {"llmfleet_model": "minimax-m2"}}
    plans = vllm_plan_collect(["a", "b", "c"], hostvars)
    assert [p["host"] for p in plans] == ["a", "b", "c"]
    assert plans[0] == good
    for missing in plans[1:]:
        assert missing["fits"] is False and missing["reason_codes"] == ["no_plan"] and missing["reasons"]
        assert missing["vllm_args"] == [] and missing["gpu_count"] == 0
    assert plans[1]["model"] == "minimax-m2"


def test_the_profile_example_in_the_docs_is_valid():
    import re

    import yaml

    text = (REPO / "docs" / "planning.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "llmfleet_model_profiles:" in b)
    inventory = yaml.safe_load(block)
    user = inventory["llmfleet_model_profiles"]
    big = model_profile(inventory["llmfleet_model"], user)
    assert big["num_layers"] == 64 and "weights_bytes" in big["derived_from_config"]
    assert 60 < big["weights_gib"] < 62  # 32.8B bfloat16 parameters
    short = model_profile("minimax-m2-short", user)
    assert short["reasoning_parser"] == "minimax_m2" and short["max_model_len"] == 131072
    plan = vllm_plan(capture_facts("h100-sxm-80gbx8_table_modal-gpu-glossary.txt"), big, {}, host="q")
    assert plan["fits"] is True
