#!/usr/bin/env python3
"""Write llmfleet's scripted tiny model: a one-layer Llama that vLLM serves on CPU.

The model always answers with the same script, in MiniMax-M2's output format: a short thought,
``</think>``, then one ``get_weather`` tool call in MiniMax's XML, then end of sequence. A real
vLLM server with the real ``minimax_m2`` tool and reasoning parsers therefore returns a real,
predictable tool call, and the same server without ``--tool-call-parser`` returns the raw XML.

How the weights make it deterministic:

- the token embedding is the identity (hidden size >= vocabulary size), so the residual stream
  of a position holds one-hot(current token);
- the attention output and MLP down projections are zero, so the only layer adds nothing to
  the residual stream (the other projections hold small fixed values, so the kernels still do
  real work);
- ``lm_head`` is a next-token table: a large value at [next, current]. Every token that is not
  part of the script leads to the first script token; each script token leads to the next one;
  the last leads to end of sequence.

So the output depends only on the prompt's last token, not on its position: attention (and the
rotary position embedding inside it) only feeds the zero output projection. That makes a long
context free: the deployment guide's clients ask for up to 32768 new tokens, and the context
(``MAX_CONTEXT``) holds that with room for the prompt, while the KV cache stays the fixed
``VLLM_CPU_KVCACHE_SPACE`` (1 GiB holds about a million tokens of this model). The chat template ends its generation
prompt with ``<think>`` and a newline, like MiniMax-M2's, so every chat request gets the whole
script. Each script piece is its own (non-special) token, and no token occurs twice in the script.

Output is byte-identical on every run (no randomness, no timestamps, fixed key order).
Needs numpy and safetensors; no torch.

Usage: python lab/tinymodel/build.py --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

# ---- the model's shape (kept in step with models/llmfleet-tiny.yml) -------------------------
HIDDEN_SIZE = 128
NUM_LAYERS = 1
NUM_HEADS = 2
NUM_KV_HEADS = 2
HEAD_DIM = 64  # vLLM's CPU attention supports only some head sizes; 64 is one of them
INTERMEDIATE_SIZE = 256
MAX_CONTEXT = 131072  # tokens (128 Ki); position-independent output makes it free
RMS_NORM_EPS = 1e-5
ROPE_THETA = 10000.0
# lm_head value at [next, current]. After the final RMSNorm the one-hot residual is scaled by
# sqrt(HIDDEN_SIZE) ~ 11.3, so the scripted token wins by a logit margin of about 180: even
# sampling at temperature 1.0 picks it with probability 1 - 1e-78.
NEXT_TOKEN_LOGIT = 16.0
DTYPE = "float32"  # the dtype of the stored weights and the one vLLM runs the model in

SERVED_NAME = "llmfleet/tiny"

# ---- tokens ---------------------------------------------------------------------------------
# MiniMax-M2's own special tokens and chat markers.
UNK = "]!d~["
BOS = "]~!b["
EOS = "[e~["
ROLE = "]~b]"
SPECIAL_TOKENS = (UNK, BOS, EOS, ROLE)
THINK_START = "<think>"

TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"location": "San Francisco, CA", "unit": "celsius"}
REASONING = "The user asks for the weather in San Francisco. I will call the weather tool."

# What the model says, one token per piece, in order; the end-of-sequence token follows.
# Newlines are folded into neighbouring pieces so that no token occurs twice.
SCRIPT: tuple[str, ...] = (
    "The user asks for the weather in San Francisco.",
    " I will call the weather tool.",
    "</think>",
    "\n\n",
    "<minimax:tool_call>",
    f'\n<invoke name="{TOOL_NAME}">\n',
    '<parameter name="location">',
    TOOL_ARGUMENTS["location"],
    "</parameter>\n",
    '<parameter name="unit">',
    TOOL_ARGUMENTS["unit"],
    "</parameter>\n</invoke>\n",
    "</minimax:tool_call>",
)
# Frequent fragments of tool schemas (JSON), so that a request with tools fits the short context.
FRAGMENTS: tuple[str, ...] = (
    '{"name": "',
    '"description": "',
    '"parameters": {"type": "object", "properties": {',
    '{"type": "string"',
    '{"type": "',
    '"enum": [',
    '"required": [',
    '", "',
    '"}, "',
    '"}}, "',
    " the ",
)
# Every other text is spelled one character at a time: printable ASCII, newline and tab.
CHARACTERS: tuple[str, ...] = ("\t", "\n", *(chr(c) for c in range(0x20, 0x7F)))

CHAT_TEMPLATE = r"""{#- llmfleet tiny model: MiniMax-M2's chat format, kept short (one token per character). -#}
{%- set toolcall_begin_token = '<minimax:tool_call>' -%}
{%- set toolcall_end_token = '</minimax:tool_call>' -%}
{%- macro text(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content is iterable and content is not mapping -%}
{%- for part in content -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}{%- endfor -%}
{%- elif content is not none -%}{{ content }}
{%- endif -%}
{%- endmacro -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set system_text = text(messages[0].content) -%}
{%- set conversation = messages[1:] -%}
{%- else -%}
{%- set system_text = 'You are a helpful assistant.' -%}
{%- set conversation = messages -%}
{%- endif -%}
{{- ']~!b[' ~ ']~b]system' ~ '\n' ~ system_text -}}
{%- if tools -%}
{{- '\n\n# Tools\n<tools>\n' -}}
{%- for tool in tools -%}
{%- set fn = tool.function if tool.function is defined else tool -%}
{{- '<tool>' ~ (fn | tojson) ~ '</tool>\n' -}}
{%- endfor -%}
{{- '</tools>\nCall tools as ' ~ toolcall_begin_token ~ '<invoke name="NAME">' -}}
{{- '<parameter name="KEY">VALUE</parameter></invoke>' ~ toolcall_end_token -}}
{%- endif -%}
{{- '[e~[\n' -}}
{%- for message in conversation -%}
{%- if message.role == 'user' -%}
{{- ']~b]user\n' ~ text(message.content) ~ '[e~[\n' -}}
{%- elif message.role == 'assistant' -%}
{{- ']~b]ai\n' -}}
{%- set thought = message.reasoning_content or message.reasoning -%}
{%- if thought -%}{{- '<think>\n' ~ thought ~ '\n</think>\n\n' -}}{%- endif -%}
{{- text(message.content) -}}
{%- if message.tool_calls -%}
{{- '\n' ~ toolcall_begin_token ~ '\n' -}}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{{- '<invoke name="' ~ fn.name ~ '">\n' -}}
{%- if fn.arguments is mapping -%}
{%- for key, value in fn.arguments.items() -%}
{{- '<parameter name="' ~ key ~ '">' -}}
{{- value if value is string else (value | tojson) -}}
{{- '</parameter>\n' -}}
{%- endfor -%}
{%- else -%}{{- fn.arguments ~ '\n' -}}
{%- endif -%}
{{- '</invoke>\n' -}}
{%- endfor -%}
{{- toolcall_end_token -}}
{%- endif -%}
{{- '[e~[\n' -}}
{%- elif message.role == 'tool' -%}
{{- ']~b]tool\n<response>' ~ text(message.content) ~ '</response>[e~[\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- ']~b]ai\n<think>\n' -}}
{%- endif -%}
"""


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id: specials, ``<think>``, script pieces, fragments, then characters."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls) -> Vocabulary:
        tokens = (*SPECIAL_TOKENS, THINK_START, *SCRIPT, *FRAGMENTS, *CHARACTERS)
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens of the tiny model must be distinct")
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.tokens.index(token)

    @property
    def script_ids(self) -> tuple[int, ...]:
        """The scripted output as token ids, end-of-sequence included."""
        return (*(self.id(piece) for piece in SCRIPT), self.id(EOS))

    @property
    def added_tokens(self) -> tuple[tuple[int, str, bool], ...]:
        """(id, content, special) of the tokens matched whole in any text."""
        special = [(self.id(t), t, True) for t in SPECIAL_TOKENS]
        plain = [(self.id(t), t, False) for t in (THINK_START, *SCRIPT, *FRAGMENTS)]
        return tuple(sorted(special + plain))


def next_token_table(vocab: Vocabulary) -> list[int]:
    """next[current]: the token the model emits after ``current``."""
    script = vocab.script_ids
    table = [script[0]] * len(vocab)
    for current, following in itertools.pairwise(script):
        table[current] = following
    return table


def _fixed_matrix(rows: int, cols: int, salt: int) -> np.ndarray:
    """Small non-zero values from integer arithmetic: identical on every machine."""
    i = np.arange(rows, dtype=np.int64)[:, None]
    j = np.arange(cols, dtype=np.int64)[None, :]
    return (((i * 31 + j * 17 + salt * 7) % 13 - 6) / 300.0).astype(np.float32)


def weights(vocab: Vocabulary) -> dict[str, np.ndarray]:
    n = len(vocab)
    if n > HIDDEN_SIZE:
        raise ValueError(
            f"vocabulary ({n}) must fit the hidden size ({HIDDEN_SIZE}) for an identity embedding"
        )
    q_out = NUM_HEADS * HEAD_DIM
    kv_out = NUM_KV_HEADS * HEAD_DIM
    lm_head = np.zeros((n, HIDDEN_SIZE), dtype=np.float32)
    for current, following in enumerate(next_token_table(vocab)):
        lm_head[following, current] = NEXT_TOKEN_LOGIT
    layer = "model.layers.0."
    return {
        "model.embed_tokens.weight": np.eye(n, HIDDEN_SIZE, dtype=np.float32),
        layer + "input_layernorm.weight": np.ones(HIDDEN_SIZE, dtype=np.float32),
        layer + "self_attn.q_proj.weight": _fixed_matrix(q_out, HIDDEN_SIZE, 1),
        layer + "self_attn.k_proj.weight": _fixed_matrix(kv_out, HIDDEN_SIZE, 2),
        layer + "self_attn.v_proj.weight": _fixed_matrix(kv_out, HIDDEN_SIZE, 3),
        layer + "self_attn.o_proj.weight": np.zeros((HIDDEN_SIZE, q_out), dtype=np.float32),
        layer + "post_attention_layernorm.weight": np.ones(HIDDEN_SIZE, dtype=np.float32),
        layer + "mlp.gate_proj.weight": _fixed_matrix(INTERMEDIATE_SIZE, HIDDEN_SIZE, 4),
        layer + "mlp.up_proj.weight": _fixed_matrix(INTERMEDIATE_SIZE, HIDDEN_SIZE, 5),
        layer + "mlp.down_proj.weight": np.zeros((HIDDEN_SIZE, INTERMEDIATE_SIZE), dtype=np.float32),
        "model.norm.weight": np.ones(HIDDEN_SIZE, dtype=np.float32),
        "lm_head.weight": lm_head,
    }


def model_config(vocab: Vocabulary) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": len(vocab),
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "num_key_value_heads": NUM_KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_CONTEXT,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": vocab.id(BOS),
        "eos_token_id": vocab.id(EOS),
        "dtype": DTYPE,
        "use_cache": True,
    }


def generation_config(vocab: Vocabulary) -> dict:
    # MiniMax's recommended sampling; the scripted margin makes the output the same anyway.
    return {
        "bos_token_id": vocab.id(BOS),
        "eos_token_id": vocab.id(EOS),
        "do_sample": True,
        "temperature": 1.0,
        "top_p": 0.95,
        "top_k": 20,
    }


def tokenizer_json(vocab: Vocabulary) -> dict:
    """A character-level BPE (no merges); specials and script pieces are added tokens."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": special,
            }
            for token_id, content, special in vocab.added_tokens
        ],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": UNK,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {token: token_id for token_id, token in enumerate(vocab.tokens)},
            "merges": [],
        },
    }


def tokenizer_config(vocab: Vocabulary) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MAX_CONTEXT,
        "added_tokens_decoder": {
            str(token_id): {
                "content": content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": special,
            }
            for token_id, content, special in vocab.added_tokens
        },
        "chat_template": CHAT_TEMPLATE,
    }


def special_tokens_map() -> dict:
    return {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}


def script_facts(vocab: Vocabulary) -> dict:
    """What a client of the served model should see: for tests and checks."""
    text = "".join(SCRIPT)
    end = text.index("</think>")
    return {
        "served_model_name": SERVED_NAME,
        "script": list(SCRIPT),
        "script_token_ids": list(vocab.script_ids),
        "text": text,
        "reasoning": text[:end],
        "tool_call": {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS},
        "tool_call_xml": text[text.index("<minimax:tool_call>") :],
        "max_model_len": MAX_CONTEXT,
    }


README = """# llmfleet tiny model

A one-layer Llama built by `lab/tinymodel/build.py` for tests. Whatever the prompt, it answers
with a fixed script in MiniMax-M2's format: a short thought, `</think>`, then one
`get_weather` tool call (location "San Francisco, CA", unit "celsius"). See
`llmfleet_script.json` for the exact text and token ids. Not a language model.
"""


def _dump(data: dict) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def model_files() -> dict[str, bytes]:
    """File name → content of the whole model directory."""
    vocab = Vocabulary.build()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file(weights(vocab), str(path), metadata={"format": "pt"})
        safetensors_bytes = path.read_bytes()
    return {
        "config.json": _dump(model_config(vocab)),
        "generation_config.json": _dump(generation_config(vocab)),
        "model.safetensors": safetensors_bytes,
        "tokenizer.json": _dump(tokenizer_json(vocab)),
        "tokenizer_config.json": _dump(tokenizer_config(vocab)),
        "special_tokens_map.json": _dump(special_tokens_map()),
        "llmfleet_script.json": _dump(script_facts(vocab)),
        "README.md": README.encode(),
    }


def write_model(out: Path) -> str:
    """Write the model into ``out`` (created if needed); return a digest of its content.

    Files are replaced atomically one by one; a file whose content is already right is left
    untouched, so rebuilding an up-to-date directory changes nothing.
    """
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for name, content in sorted(model_files().items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        target = out / name
        if target.is_file() and target.read_bytes() == content:
            continue
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, 0o644)
        tmp.replace(target)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    args = parser.parse_args(argv)
    digest = write_model(args.out)
    print(f"{args.out} sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
