"""MiniMax-M2 as the hub double serves it: every real file name and the real ``config.json``, small content.

The file names and ``config.json`` come from ``tests/fixtures/models/minimax-m2/`` (``files.txt``,
``config.json``; their sources are in ``SOURCES.md`` there). Everything else is a stand-in of a few KiB,
the same on every build, so the repository's content-derived commit is fixed (:data:`MINIMAX_M2_REVISION`):

- every ``model-*.safetensors`` shard is a valid safetensors file holding one small ``U8`` tensor named
  after the real layout (embeddings in the first shard, ``lm_head`` and the final norm in the last);
- ``model.safetensors.index.json`` maps exactly those tensors to their shards, and its ``total_size``
  is the sum of their bytes;
- tokenizer, chat template, code and documents are short placeholders under their real names.

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

REPO_ID = "MiniMaxAI/MiniMax-M2"
FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "minimax-m2"
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
SHARD_TENSOR_BYTES = 2048
NUM_LAYERS = 62
# The commit the double derives from the repository's content (a change of any byte changes it).
MINIMAX_M2_REVISION = "abd996486d6dc9d05648d10c112a9f77273e572f"


def real_file_names(fixture_dir: Path = FIXTURE_DIR) -> list[str]:
    """The repository's paths, in the order of ``files.txt`` (comments and blank lines skipped)."""
    lines = (line.strip() for line in (fixture_dir / "files.txt").read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def shard_names(paths: list[str]) -> list[str]:
    return sorted(p for p in paths if p.startswith("model-") and p.endswith(".safetensors"))


def shard_tensor_names(position: int, count: int) -> list[str]:
    """Tensor names for the shard at ``position`` of ``count``: real names, spread over the layers."""
    if position == 0:
        return ["model.embed_tokens.weight"]
    if position == count - 1:
        return ["lm_head.weight", "model.norm.weight"]
    layer = (position - 1) * NUM_LAYERS // max(1, count - 2)
    return [f"model.layers.{layer}.block_sparse_moe.experts.{position - 1}.w1.weight"]


def filler(label: str, size: int) -> bytes:
    """``size`` bytes that depend only on ``label``."""
    return hashlib.shake_256(label.encode()).digest(size)


def safetensors_bytes(tensors: dict[str, bytes]) -> bytes:
    """A safetensors file of flat ``U8`` tensors, in name order."""
    header: dict[str, dict[str, object]] = {}
    offset = 0
    for name in sorted(tensors):
        size = len(tensors[name])
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + b"".join(tensors[name] for name in sorted(tensors))


def read_safetensors_header(data: bytes) -> dict[str, dict[str, object]]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])


def placeholder(path: str) -> bytes:
    """Short content for a file the double serves under its real name only."""
    if path.endswith(".json"):
        return (json.dumps({"stand_in": f"{REPO_ID}/{path}"}, indent=2) + "\n").encode()
    if path.endswith(".png"):
        return filler(path, 1024)
    return f"Stand-in for {REPO_ID}/{path}.\n".encode()


def minimax_m2_files(fixture_dir: Path = FIXTURE_DIR) -> dict[str, bytes]:
    """Every file of the repository, path to content."""
    paths = real_file_names(fixture_dir)
    shards = shard_names(paths)
    files: dict[str, bytes] = {}
    weight_map: dict[str, str] = {}
    for position, shard in enumerate(shards):
        tensors = {
            name: filler(f"{shard}/{name}", SHARD_TENSOR_BYTES)
            for name in shard_tensor_names(position, len(shards))
        }
        files[shard] = safetensors_bytes(tensors)
        weight_map.update(dict.fromkeys(tensors, shard))
    index = {
        "metadata": {"total_size": SHARD_TENSOR_BYTES * len(weight_map)},
        "weight_map": dict(sorted(weight_map.items())),
    }
    files[INDEX_NAME] = (json.dumps(index, indent=2) + "\n").encode()
    files[CONFIG_NAME] = (fixture_dir / CONFIG_NAME).read_bytes()
    for path in paths:
        files.setdefault(path, placeholder(path))
    return {path: files[path] for path in paths}


def make_minimax_m2_repo(root: Path, revision: str = "master", fixture_dir: Path = FIXTURE_DIR) -> Path:
    """``<root>/MiniMaxAI/MiniMax-M2/<revision>/`` with :func:`minimax_m2_files`; returns that directory."""
    repo = root.joinpath(*REPO_ID.split("/"), revision)
    for path, data in minimax_m2_files(fixture_dir).items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
    return repo
