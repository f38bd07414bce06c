"""The lab's scripted tiny model: deterministic files, sane config, and a forward pass (numpy)
that reproduces the script."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "lab" / "tinymodel" / "build.py"
PROFILE = REPO / "models" / "llmfleet-tiny.yml"
# The deployment guide's clients ask for up to this many new tokens (max_tokens).
GUIDE_MAX_TOKENS = 32768


def _load_build():
    spec = importlib.util.spec_from_file_location("llmfleet_tinymodel_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    build.write_model(out)
    return out


@pytest.fixture(scope="module")
def config(model_dir) -> dict:
    return json.loads((model_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def tensors(model_dir) -> dict[str, np.ndarray]:
    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def tokenizer(model_dir) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def facts(model_dir) -> dict:
    return json.loads((model_dir / "llmfleet_script.json").read_text())


# ---- a numpy Llama forward pass (the path vLLM runs), written from the config ---------------
def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rope(x: np.ndarray, theta: float, start: int = 0) -> np.ndarray:
    """x: [positions, heads, head_dim] at positions start, start + 1, ...; rotate-half convention of Llama."""
    positions, _, dim = x.shape
    inv_freq = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.arange(start, start + positions)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angles)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, axis=-1)[:, None, :]
    half = dim // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def forward_logits(ids: list[int], cfg: dict, w: dict[str, np.ndarray], start: int = 0) -> np.ndarray:
    """Logits of the last position for token ids ``ids``, the first of them at position ``start``."""
    eps = cfg["rms_norm_eps"]
    heads, kv_heads, head_dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    h = w["model.embed_tokens.weight"].astype(np.float64)[ids]
    n = len(ids)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = _rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(n, heads, head_dim)
        k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(n, kv_heads, head_dim)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(n, kv_heads, head_dim)
        q, k = _rope(q, cfg["rope_theta"], start), _rope(k, cfg["rope_theta"], start)
        group = heads // kv_heads
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim)
        scores = scores + np.triu(np.full((n, n), -np.inf), k=1)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = np.einsum("hqk,khd->qhd", scores / scores.sum(axis=-1, keepdims=True), v).reshape(n, -1)
        h = h + attn @ w[p + "self_attn.o_proj.weight"].T
        x = _rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = x @ w[p + "mlp.gate_proj.weight"].T
        up = x @ w[p + "mlp.up_proj.weight"].T
        h = h + ((gate / (1 + np.exp(-gate))) * up) @ w[p + "mlp.down_proj.weight"].T
    h = _rms_norm(h, w["model.norm.weight"], eps)
    return (h @ w["lm_head.weight"].T)[-1]


def greedy(
    prompt: list[int], cfg: dict, w: dict[str, np.ndarray], limit: int = 40, start: int = 0
) -> list[int]:
    ids, out = list(prompt), []
    for _ in range(limit):
        token = int(np.argmax(forward_logits(ids, cfg, w, start)))
        out.append(token)
        ids.append(token)
        if token == cfg["eos_token_id"]:
            break
    return out


# ---- determinism ------------------------------------------------------------------------------
def test_two_builds_are_byte_identical(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    digest_a = build.write_model(first)
    digest_b = build.write_model(second)
    files_a = {p.name: p.read_bytes() for p in first.iterdir()}
    files_b = {p.name: p.read_bytes() for p in second.iterdir()}
    assert digest_a == digest_b
    assert files_a == files_b
    assert set(files_a) >= {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }


def test_rebuild_leaves_up_to_date_files_untouched(tmp_path):
    build.write_model(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    build.write_model(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_rebuild_repairs_a_damaged_file(tmp_path):
    build.write_model(tmp_path)
    good = (tmp_path / "config.json").read_bytes()
    (tmp_path / "config.json").write_text("{}")
    build.write_model(tmp_path)
    assert (tmp_path / "config.json").read_bytes() == good


def test_cli_writes_the_model(tmp_path, capsys):
    assert build.main(["--out", str(tmp_path / "m")]) == 0
    assert "sha256:" in capsys.readouterr().out
    assert (tmp_path / "m" / "model.safetensors").is_file()


# ---- config and weights -----------------------------------------------------------------------
def profile_mismatches(config: dict, profile_config: dict) -> dict[str, tuple]:
    """key: (model's value, profile's value) for every number of the profile the model disagrees with."""
    model = {**config, "torch_dtype": config["dtype"]}
    return {k: (model.get(k), v) for k, v in profile_config.items() if model.get(k) != v}


def test_config_matches_the_profile_numbers(config):
    assert profile_mismatches(config, yaml.safe_load(PROFILE.read_text())["config"]) == {}
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 1
    assert config["hidden_size"] == 128
    assert config["num_attention_heads"] == 2
    assert config["head_dim"] == 64
    assert config["num_attention_heads"] * config["head_dim"] == config["hidden_size"]
    assert config["num_key_value_heads"] in (1, 2)
    assert config["vocab_size"] < 128
    assert config["vocab_size"] <= config["hidden_size"]


def test_a_profile_out_of_step_with_the_model_is_caught(config):
    """Negative: the profile's old context (1024) is reported as a mismatch."""
    stale = {**yaml.safe_load(PROFILE.read_text())["config"], "max_position_embeddings": 1024}
    assert profile_mismatches(config, stale) == {
        "max_position_embeddings": (config["max_position_embeddings"], 1024)
    }


def test_context_holds_the_guides_largest_request(model_dir, config, facts):
    """A chat with a tool is about 400 prompt tokens; max_tokens 32768 must fit beside it, many times over."""
    context = config["max_position_embeddings"]
    assert context >= 65536
    assert context >= GUIDE_MAX_TOKENS + 1024
    tokenizer_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_cfg["model_max_length"] == facts["max_model_len"] == context


def test_head_dim_is_one_cpu_attention_supports(config):
    assert config["head_dim"] in (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def test_weight_shapes_follow_the_config(config, tensors):
    v, d, f = config["vocab_size"], config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    assert tensors["model.embed_tokens.weight"].shape == (v, d)
    assert tensors["lm_head.weight"].shape == (v, d)
    assert tensors["model.layers.0.self_attn.k_proj.weight"].shape == (kv, d)
    assert tensors["model.layers.0.mlp.down_proj.weight"].shape == (d, f)
    assert not [name for name in tensors if name.startswith("model.layers.1.")]


def test_embedding_is_identity_and_output_projections_are_zero(tensors):
    emb = tensors["model.embed_tokens.weight"]
    assert np.array_equal(emb, np.eye(*emb.shape, dtype=emb.dtype))
    assert not tensors["model.layers.0.self_attn.o_proj.weight"].any()
    assert not tensors["model.layers.0.mlp.down_proj.weight"].any()
    # the rest of the layer does real work, so the kernels are exercised
    assert tensors["model.layers.0.self_attn.q_proj.weight"].any()
    assert tensors["model.layers.0.mlp.gate_proj.weight"].any()


def test_lm_head_has_one_entry_per_current_token(config, tensors):
    lm_head = tensors["lm_head.weight"]
    nonzero_per_column = (lm_head[:, : config["vocab_size"]] != 0).sum(axis=0)
    assert nonzero_per_column.tolist() == [1] * config["vocab_size"]


def test_special_token_ids_agree_everywhere(model_dir, config, tokenizer):
    gen = json.loads((model_dir / "generation_config.json").read_text())
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert gen["eos_token_id"] == config["eos_token_id"] == tokenizer.token_to_id(tok_cfg["eos_token"])
    assert gen["bos_token_id"] == config["bos_token_id"] == tokenizer.token_to_id(tok_cfg["bos_token"])
    assert tokenizer.get_vocab_size() == config["vocab_size"]


# ---- the script -------------------------------------------------------------------------------
def test_forward_pass_reproduces_the_script(config, tensors, tokenizer, facts):
    prompt = tokenizer.encode("]~b]ai\n<think>\n").ids
    out = greedy(prompt, config, tensors)
    assert out == facts["script_token_ids"]
    assert out[-1] == config["eos_token_id"]
    assert tokenizer.decode(out[:-1]) == facts["text"]


def test_forward_pass_starts_the_script_from_any_other_prompt(config, tensors, tokenizer, facts):
    prompt = tokenizer.encode("Hello, how are you?").ids
    assert int(np.argmax(forward_logits(prompt, config, tensors))) == facts["script_token_ids"][0]


def test_forward_pass_continues_mid_script(config, tensors, tokenizer, facts):
    """The next token depends only on the last one: after `</think>` comes the blank line."""
    script = facts["script_token_ids"]
    i = facts["script"].index("</think>")
    prompt = tokenizer.encode("anything " + facts["script"][i]).ids
    assert int(np.argmax(forward_logits(prompt, config, tensors))) == script[i + 1]


def last_position(config: dict, prompt: list[int], script: list[int]) -> int:
    """Where a prompt starts so that it and the whole script end on the context's last position."""
    return config["max_position_embeddings"] - len(prompt) - len(script)


def test_forward_pass_reproduces_the_script_at_the_end_of_the_context(config, tensors, tokenizer, facts):
    """Positions do not matter: rotary embeddings only reach the zero attention output projection."""
    prompt = tokenizer.encode("]~b]ai\n<think>\n").ids
    start = last_position(config, prompt, facts["script_token_ids"])
    assert start > GUIDE_MAX_TOKENS
    assert greedy(prompt, config, tensors, start=start) == facts["script_token_ids"]


def test_logits_are_the_same_at_every_position(config, tensors, tokenizer):
    prompt = tokenizer.encode("What is the weather in San Francisco?").ids
    near = forward_logits(prompt, config, tensors)
    for start in (1000, GUIDE_MAX_TOKENS, last_position(config, prompt, [])):
        assert np.array_equal(forward_logits(prompt, config, tensors, start), near), start


def test_positions_would_matter_with_a_non_zero_attention_output(config, tensors, tokenizer):
    """Negative: the same exact comparison sees the positions once attention reaches the residual.

    Rotary embeddings are relative, so what changes far out is only the rounding of the rotation
    angles (about 1e-11 here): the comparison is exact, and even that is caught.
    """
    broken = dict(tensors)
    broken["model.layers.0.self_attn.o_proj.weight"] = np.full_like(
        tensors["model.layers.0.self_attn.o_proj.weight"], 3.0
    )
    prompt = tokenizer.encode("What is the weather in San Francisco?").ids
    far = last_position(config, prompt, [])
    assert not np.array_equal(
        forward_logits(prompt, config, broken, far), forward_logits(prompt, config, broken)
    )


def test_scripted_token_wins_by_a_large_margin(config, tensors, tokenizer):
    logits = np.sort(forward_logits(tokenizer.encode("x").ids, config, tensors))
    assert logits[-1] - logits[-2] > 50


def test_a_broken_model_does_not_reproduce_the_script(config, tensors, tokenizer, facts):
    """Negative: with a non-zero attention output the residual is no longer one-hot."""
    broken = dict(tensors)
    broken["model.layers.0.self_attn.o_proj.weight"] = np.full_like(
        tensors["model.layers.0.self_attn.o_proj.weight"], 3.0
    )
    prompt = tokenizer.encode("]~b]ai\n<think>\n").ids
    assert greedy(prompt, config, broken, limit=len(facts["script_token_ids"])) != facts["script_token_ids"]


def test_script_has_the_minimax_tool_call(facts):
    text = facts["text"]
    assert "<think>" not in text
    assert text.index("</think>") < text.index("<minimax:tool_call>")
    assert facts["tool_call_xml"] == (
        "<minimax:tool_call>\n"
        '<invoke name="get_weather">\n'
        '<parameter name="location">San Francisco, CA</parameter>\n'
        '<parameter name="unit">celsius</parameter>\n'
        "</invoke>\n"
        "</minimax:tool_call>"
    )
    assert facts["tool_call"] == {
        "name": "get_weather",
        "arguments": {"location": "San Francisco, CA", "unit": "celsius"},
    }
    assert facts["reasoning"] == text[: text.index("</think>")]


def test_script_tokens_are_distinct(facts):
    ids = facts["script_token_ids"]
    assert len(set(ids)) == len(ids)


# ---- tokenizer -------------------------------------------------------------------------------
@pytest.mark.parametrize("piece", build.SCRIPT)
def test_each_script_piece_is_one_token(tokenizer, piece):
    encoding = tokenizer.encode(piece)
    assert len(encoding.ids) == 1, encoding.tokens
    assert tokenizer.decode(encoding.ids) == piece


def test_whole_script_round_trips(tokenizer, facts):
    ids = tokenizer.encode(facts["text"]).ids
    assert ids == facts["script_token_ids"][:-1]
    assert tokenizer.decode(ids) == facts["text"]


def test_script_pieces_are_not_special(model_dir, facts):
    added = {t["content"]: t for t in json.loads((model_dir / "tokenizer.json").read_text())["added_tokens"]}
    for piece in facts["script"]:
        assert added[piece]["special"] is False
    assert added["<think>"]["special"] is False
    assert added["[e~["]["special"] is True


def test_end_of_sequence_is_skipped_when_decoding(tokenizer, facts):
    assert tokenizer.decode(facts["script_token_ids"], skip_special_tokens=True) == facts["text"]


def test_ordinary_text_round_trips_character_by_character(tokenizer):
    text = 'Weather in Paris? {"unit": "celsius"}\n'
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_unknown_characters_become_unk(tokenizer):
    assert tokenizer.encode("é").tokens == ["]!d~["]


def test_vocabulary_rejects_duplicate_tokens(monkeypatch):
    monkeypatch.setattr(build, "SCRIPT", (*build.SCRIPT, "</think>"))
    with pytest.raises(ValueError, match="distinct"):
        build.Vocabulary.build()


def test_vocabulary_must_fit_the_hidden_size(monkeypatch):
    monkeypatch.setattr(build, "HIDDEN_SIZE", 64)
    with pytest.raises(ValueError, match="hidden size"):
        build.weights(build.Vocabulary.build())


# ---- chat template (rendered with jinja2 when it is available) --------------------------------
def test_chat_template_opens_think_and_renders_tools(model_dir):
    jinja2 = pytest.importorskip("jinja2")
    template = json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value: json.dumps(value)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}],
        },
        {"role": "tool", "content": "20 C"},
    ]
    text = env.from_string(template).render(messages=messages, tools=tools, add_generation_prompt=True)
    assert text.startswith("]~!b[]~b]system\nYou are a helpful assistant.")
    assert '<tool>{"name": "get_weather"' in text
    assert '<invoke name="get_weather">\n<parameter name="location">Paris</parameter>\n</invoke>' in text
    assert "]~b]tool\n<response>20 C</response>[e~[\n" in text
    assert text.endswith("]~b]ai\n<think>\n")
    no_prompt = env.from_string(template).render(messages=messages[:1], add_generation_prompt=False)
    assert "<think>" not in no_prompt
    assert "# Tools" not in no_prompt
