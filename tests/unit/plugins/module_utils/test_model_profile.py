"""Model profiles: the shipped files, derivation from config.json, validation and lookup."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils.model_profile import (
    CPU_HEAD_SIZES,
    GB,
    GIB,
    ParallelLayout,
    ProfileError,
    derive_from_config,
    profile_from_dict,
    resolve_profile,
)

MODELS = Path(__file__).resolve().parents[4] / "models"


def shipped() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(MODELS.glob("*.yml"))}


def load(name: str):
    return profile_from_dict(copy.deepcopy(shipped()[name]), source=name)


# ---- the shipped profiles ----------------------------------------------------------------------


def test_shipped_profiles_are_the_three_required_ones_and_all_load():
    names = set(shipped())
    assert {"minimax-m2", "qwen3-8b", "llmfleet-tiny"} <= names
    for name in names:
        profile = load(name)
        assert profile.name == name
        assert profile.weights_bytes > 0
        assert profile.kv_bytes_per_token > 0


def test_minimax_m2_profile_matches_the_vendor_facts():
    m2 = load("minimax-m2")
    # derived from config.json, not hand-written
    for key in ("num_layers", "num_kv_heads", "head_dim", "weight_block_size", "moe_intermediate_size"):
        assert key in m2.derived_from_config
    assert (m2.num_layers, m2.num_kv_heads, m2.head_dim) == (62, 8, 128)
    assert m2.num_attention_heads == 48
    assert m2.architecture == "moe" and m2.num_experts == 256
    assert m2.weight_format == "fp8" and m2.weight_block_size == 128
    # 62 x 8 x 128 x 2 (K and V) x 2 bytes = 253,952 B per token, about 240 GiB per 1M tokens
    assert m2.kv_bytes_per_token == 253_952
    assert 230 <= m2.kv_bytes_per_token * 1_000_000 / GIB <= 245
    assert m2.max_model_len == 196_608
    # the vendor says about 220 GB of weights; the profile plans with 230 GB
    assert 215 * GB <= m2.weights_bytes <= 235 * GB
    # almost all of it sits in routed experts (what expert parallel spreads over the GPUs)
    assert 0.95 < m2.expert_weights_bytes / m2.weights_bytes < 0.99
    assert m2.tool_call_parser == "minimax_m2"
    assert m2.reasoning_parser == "minimax_m2_append_think"
    assert set(m2.reasoning_parsers) == {"minimax_m2_append_think", "minimax_m2"}
    assert m2.sampling == {"temperature": 1.0, "top_p": 0.95, "top_k": 20}
    assert m2.min_vllm_version == "0.11.1"
    assert (m2.min_compute_capability, m2.fallback_compute_capability) == ("8.9", "8.0")
    assert m2.served_model_name == "MiniMaxAI/MiniMax-M2"
    assert m2.modelscope_id == "MiniMaxAI/MiniMax-M2" and m2.huggingface_id == "MiniMaxAI/MiniMax-M2"
    assert m2.trust_remote_code is True
    assert ParallelLayout.parse("tp8") in {r.layout for r in m2.refused_layouts}
    assert [x.name for x in m2.layouts] == ["tp4", "tp8-ep", "tp4-ep-dp2", "dp8-ep"]
    assert m2.cpu.servable is False and "CPU" in m2.cpu.reason


def test_qwen3_8b_is_derived_entirely_from_config():
    q = load("qwen3-8b")
    assert {"num_layers", "num_kv_heads", "head_dim", "max_model_len", "weights_bytes"} <= set(
        q.derived_from_config
    )
    assert (q.num_layers, q.num_kv_heads, q.head_dim, q.max_model_len) == (36, 8, 128, 40960)
    assert q.architecture == "dense" and q.layouts == ()
    # 8.2B bfloat16 parameters: about 16.4 GB
    assert 16.0 * GB < q.weights_bytes < 16.8 * GB
    assert q.kv_bytes_per_token == 2 * 36 * 8 * 128 * 2


def test_tiny_model_is_cpu_servable_with_minimax_parsers():
    tiny = load("llmfleet-tiny")
    assert tiny.num_layers == 1 and tiny.hidden_size == 128
    assert tiny.num_attention_heads == 2 and tiny.head_dim == 64 and tiny.num_kv_heads in (1, 2)
    assert tiny.head_dim in CPU_HEAD_SIZES
    assert tiny.max_model_len == 131072
    assert tiny.weights_bytes < 1_000_000
    assert tiny.dtype in ("float32", "bfloat16")
    assert tiny.cpu.servable is True
    assert tiny.tool_call_parser == "minimax_m2"
    assert tiny.reasoning_parser == "minimax_m2_append_think"


def test_tiny_profile_is_in_step_with_the_lab_builder():
    path = MODELS.parent / "lab" / "tinymodel" / "build.py"
    if not path.is_file():
        pytest.skip("the lab's model builder is not in this tree")
    pytest.importorskip("numpy")
    pytest.importorskip("safetensors")
    spec = importlib.util.spec_from_file_location("llmfleet_tinymodel_build_for_profile", path)
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # its dataclasses look themselves up there
    spec.loader.exec_module(build)
    tiny = load("llmfleet-tiny")
    assert tiny.hidden_size == build.HIDDEN_SIZE
    assert tiny.num_layers == build.NUM_LAYERS
    assert tiny.num_attention_heads == build.NUM_HEADS
    assert tiny.num_kv_heads == build.NUM_KV_HEADS
    assert tiny.head_dim == build.HEAD_DIM
    assert tiny.max_model_len == build.MAX_CONTEXT
    assert tiny.dtype == build.DTYPE
    assert tiny.served_model_name == build.SERVED_NAME


def test_round_trip_through_as_dict():
    for name in shipped():
        profile = load(name)
        again = profile_from_dict(profile.as_dict())
        assert again.as_dict() == profile.as_dict()


# ---- derivation from config.json -------------------------------------------------------------


def test_derive_head_dim_from_hidden_size_and_kv_heads_default_to_heads():
    shape = derive_from_config({"num_hidden_layers": 32, "num_attention_heads": 32, "hidden_size": 4096})
    assert shape.head_dim == 128
    assert shape.num_kv_heads == 32
    assert shape.weights_bytes is None  # no vocab, no dtype: no estimate


def test_derive_reads_text_config_of_multimodal_models():
    config = {
        "architectures": ["SomeVLForConditionalGeneration"],
        "text_config": {
            "num_hidden_layers": 40,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "hidden_size": 5120,
            "max_position_embeddings": 131072,
        },
    }
    shape = derive_from_config(config)
    assert (shape.num_layers, shape.num_kv_heads, shape.head_dim, shape.max_model_len) == (40, 8, 128, 131072)


def test_derive_rejects_a_non_mapping():
    with pytest.raises(ProfileError, match="mapping"):
        derive_from_config(["not", "a", "config"])  # type: ignore[arg-type]


def test_kv_cache_fp8_halves_the_bytes_per_token():
    data = copy.deepcopy(shipped()["minimax-m2"])
    data["kv_cache_dtype"] = "fp8"
    assert profile_from_dict(data).kv_bytes_per_token == 253_952 // 2


# ---- layouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tp", "dp", "pp", "ep", "name"),
    [
        ("tp4", 4, 1, 1, False, "tp4"),
        ("tp8-ep", 8, 1, 1, True, "tp8-ep"),
        ("TP4+EP+DP2", 4, 2, 1, True, "tp4-ep-dp2"),
        ("dp8-ep", 1, 8, 1, True, "dp8-ep"),
        ("ep-dp8", 1, 8, 1, True, "dp8-ep"),
        ("tp2-pp2", 2, 1, 2, False, "tp2-pp2"),
        ("tp1", 1, 1, 1, False, "tp1"),
    ],
)
def test_layout_names(text, tp, dp, pp, ep, name):
    layout = ParallelLayout.parse(text)
    assert (layout.tp, layout.dp, layout.pp, layout.ep) == (tp, dp, pp, ep)
    assert layout.name == name
    assert ParallelLayout.parse(layout.name) == layout
    assert ParallelLayout.parse({"tp": tp, "dp": dp, "pp": pp, "ep": ep}) == layout


@pytest.mark.parametrize("text", ["", "tp", "tp0", "tp4-tp2", "tensor4", "tp4-ep-xx"])
def test_bad_layout_names_are_refused(text):
    with pytest.raises(ProfileError):
        ParallelLayout.parse(text)


# ---- validation: every error names the profile and the field ----------------------------------


def base() -> dict:
    return copy.deepcopy(shipped()["qwen3-8b"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(config={}), "'num_layers' is missing"),
        (lambda d: d.update(colour="blue"), "unknown fields"),
        (lambda d: d.update(weights_gib=15, weights_gb=16), "give the weights' size once"),
        (lambda d: d.update(reasoning_parser="nope"), "not in reasoning_parsers"),
        (lambda d: d.update(layouts=["tp2"], refused_layouts=[{"layout": "tp2", "reason": "x"}]), "both"),
        (lambda d: d.update(layouts=["tp2-ep"]), "expert parallel layouts need a MoE model"),
        (lambda d: d.update(cpu={"servable": False}), "cpu.reason"),
        (lambda d: d.update(cpu={"servable": "yes"}), "cpu.servable"),
        (lambda d: d.update(min_compute_capability="eight"), "must look like"),
        (lambda d: d.update(fallback_compute_capability="8.0"), "below min_compute_capability"),
        (lambda d: d.update(min_model_len=100000), "exceeds max_model_len"),
        (lambda d: d.update(min_vllm_version="latest"), "not a version number"),
        (lambda d: d.update(refused_layouts=[{"layout": "tp8"}]), "reason"),
        (lambda d: d.update(layouts=["tp2", "tp2"]), "listed twice"),
        (lambda d: d.update(kv_cache_dtype="int3"), "unknown KV cache dtype"),
        (lambda d: d["config"].update(num_key_value_heads=5), "multiple of num_kv_heads"),
        (lambda d: d.update(architecture="hybrid"), "architecture"),
        (lambda d: d.update(extra_args="--enforce-eager"), "extra_args"),
    ],
)
def test_invalid_profiles_are_refused_with_the_field_named(change, message):
    data = base()
    change(data)
    with pytest.raises(ProfileError, match=message) as exc:
        profile_from_dict(data)
    assert "qwen3-8b" in str(exc.value)


def test_minimum_compute_capability_on_qwen_is_valid_after_the_fix():
    data = base()
    data["min_compute_capability"] = "8.9"
    data["fallback_compute_capability"] = "8.0"
    assert profile_from_dict(data).fallback_compute_capability == "8.0"


def test_a_profile_without_config_needs_hand_written_numbers():
    data = {
        "name": "my-model",
        "num_layers": 32,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "max_model_len": 32768,
        "weights_gib": 14,
    }
    profile = profile_from_dict(data)
    assert profile.derived_from_config == ()
    assert profile.weights_bytes == 14 * GIB
    assert profile.model_id == "my-model" and profile.served_model_name == "my-model"
    del data["weights_gib"]
    with pytest.raises(ProfileError, match="weights_gib"):
        profile_from_dict(data)


def test_moe_profile_without_expert_shapes_needs_the_expert_share():
    data = {
        "name": "moe-x",
        "architecture": "moe",
        "num_layers": 40,
        "num_attention_heads": 32,
        "num_kv_heads": 4,
        "head_dim": 128,
        "max_model_len": 65536,
        "weights_gb": 100,
    }
    with pytest.raises(ProfileError, match="expert_weights_fraction"):
        profile_from_dict(data)
    data["expert_weights_fraction"] = 0.9
    assert profile_from_dict(data).expert_weights_bytes == int(100 * GB * 0.9)


# ---- lookup ---------------------------------------------------------------------------------------


def test_resolve_by_name_case_and_model_id():
    profiles = shipped()
    assert resolve_profile("minimax-m2", profiles).name == "minimax-m2"
    assert resolve_profile("MiniMax-M2", profiles).name == "minimax-m2"
    assert resolve_profile("MiniMaxAI/MiniMax-M2", profiles).name == "minimax-m2"
    assert resolve_profile("Qwen/Qwen3-8B", profiles).name == "qwen3-8b"


def test_unknown_name_lists_the_known_profiles():
    with pytest.raises(ProfileError, match="known profiles: llmfleet-tiny, minimax-m2, qwen3-8b"):
        resolve_profile("llama-9000", shipped())


def test_inventory_profile_extends_a_shipped_one():
    # an inventory profile may replace a shipped one of the same name, extending it
    user = {"minimax-m2": {"extends": "minimax-m2", "weights_gb": 220, "reasoning_parser": "minimax_m2"}}
    same = resolve_profile("minimax-m2", shipped(), user)
    assert same.weights_bytes == 220 * GB
    assert same.reasoning_parser == "minimax_m2"
    assert same.num_layers == 62  # the rest is inherited
    assert same.source.startswith("inventory")
    # or add a new name on top of it
    user = {"m2-short": {"extends": "minimax-m2", "max_model_len": 65536, "served_model_name": "m2"}}
    short = resolve_profile("m2-short", shipped(), user)
    assert short.name == "m2-short" and short.max_model_len == 65536 and short.served_model_name == "m2"
    assert short.weights_bytes == 230 * GB
    # extending a name the inventory redefines picks up the inventory's version
    user["minimax-m2"] = {"extends": "minimax-m2", "weights_gb": 220}
    assert resolve_profile("m2-short", shipped(), user).weights_bytes == 220 * GB


def test_inventory_profile_of_its_own():
    user = {
        "my-dense": {
            "model_id": "acme/dense-7b",
            "num_layers": 28,
            "num_attention_heads": 28,
            "num_kv_heads": 4,
            "head_dim": 128,
            "max_model_len": 32768,
            "weights_gib": 14,
        }
    }
    profile = resolve_profile("my-dense", shipped(), user)
    assert profile.model_id == "acme/dense-7b" and profile.weights_gib == 14


def test_extends_loops_and_unknown_parents_are_refused():
    user = {"a": {"extends": "b"}, "b": {"extends": "a"}}
    with pytest.raises(ProfileError, match="loops"):
        resolve_profile("a", shipped(), user)
    with pytest.raises(ProfileError, match="no model profile named 'nothing'"):
        resolve_profile("c", shipped(), {"c": {"extends": "nothing"}})
    with pytest.raises(ProfileError, match="mapping"):
        resolve_profile("x", shipped(), ["not", "a", "dict"])  # type: ignore[arg-type]


def test_extends_names_a_profile_not_a_model_id():
    # served_model_name "minimax-m2" must not make `extends: minimax-m2` point back at itself
    user = {"m2-alias": {"extends": "minimax-m2", "served_model_name": "minimax-m2"}}
    alias = resolve_profile("m2-alias", shipped(), user)
    assert alias.name == "m2-alias" and alias.num_layers == 62 and alias.served_model_name == "minimax-m2"
    # a plain lookup by that served name still prefers the profile of that name
    assert resolve_profile("minimax-m2", shipped(), user).name == "minimax-m2"
    assert resolve_profile("MiniMaxAI/MiniMax-M2", shipped(), {}).name == "minimax-m2"
