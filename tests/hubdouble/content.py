"""Repository content for the hub double: small model-like repos and large sparse shards, made quickly."""

from __future__ import annotations

import json
import os
from pathlib import Path

MiB = 1024 * 1024


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    """``size`` bytes of pseudo-random data (repeatable per ``seed``; distinct per seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = _random_block(seed)
    with path.open("wb") as fh:
        left = size
        counter = 0
        while left > 0:
            # Vary each block a little so no two blocks of a file are identical.
            piece = counter.to_bytes(8, "little") + block[8:]
            fh.write(piece[: min(left, len(piece))])
            left -= len(piece)
            counter += 1
    return path


def write_sparse(path: Path, size: int, seed: int = 0, islands: int = 16) -> Path:
    """A file of ``size`` bytes that is mostly a hole, with ``islands`` random 64 KiB blocks spread over it.

    Creating a multi-hundred-MB shard this way takes milliseconds and almost no disk; its content is still
    distinct per seed, so hashes differ between shards.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    block = _random_block(seed)[: 64 * 1024]
    with path.open("wb") as fh:
        fh.truncate(size)
        for i in range(islands):
            offset = (size // islands) * i
            fh.seek(offset)
            fh.write(block[: max(0, min(len(block), size - offset))])
    return path


def _random_block(seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(MiB)


def make_model_repo(
    root: Path,
    repo_id: str,
    revision: str = "master",
    *,
    shards: int = 2,
    shard_size: int = 2 * MiB,
    sparse_shard_size: int | None = None,
    seed: int = 1,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """``<root>/<org>/<name>/<revision>/`` with config, tokenizer, safetensors-like shards and an index.

    ``sparse_shard_size`` adds one more big sparse shard (for resume and throughput tests).
    """
    org, name = repo_id.split("/")
    repo = root / org / name / revision
    repo.mkdir(parents=True, exist_ok=True)
    total_shards = shards + (1 if sparse_shard_size else 0)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "vocab_size": 64,
        "torch_dtype": "bfloat16",
        "llmfleet_seed": seed,
    }
    (repo / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (repo / "generation_config.json").write_text(json.dumps({"temperature": 1.0, "top_p": 0.95}) + "\n")
    tokenizer = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {f"t{i}": i for i in range(64)}}}
    (repo / "tokenizer.json").write_text(json.dumps(tokenizer) + "\n")
    (repo / "README.md").write_text(f"# {repo_id}\n\nTest repository generated for the hub double.\n")
    weight_map = {}
    for i in range(total_shards):
        shard = f"model-{i + 1:05d}-of-{total_shards:05d}.safetensors"
        if sparse_shard_size and i == total_shards - 1:
            write_sparse(repo / shard, sparse_shard_size, seed=seed * 100 + i)
        else:
            write_random(repo / shard, shard_size, seed=seed * 100 + i)
        weight_map[f"layers.{i}.weight"] = shard
    index = {"metadata": {"total_size": sum((repo / s).stat().st_size for s in set(weight_map.values()))}}
    index["weight_map"] = weight_map
    (repo / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    for rel, data in (extra_files or {}).items():
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return repo


def tree_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def flip_byte(path: Path, offset: int | None = None) -> int:
    """Invert one byte in place (keeping size and mtime), return its offset."""
    st = path.stat()
    offset = st.st_size // 2 if offset is None else offset
    with path.open("r+b") as fh:
        fh.seek(offset)
        value = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([value ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return offset
