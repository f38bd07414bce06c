"""MiniMax-M2 in the hub double: its real file names and config.json, small consistent stand-ins, a fixed commit,
and a complete download by the model_snapshot module through the real hub clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hubdouble.content import tree_bytes
from hubdouble.minimax_m2 import (
    CONFIG_NAME,
    FIXTURE_DIR,
    INDEX_NAME,
    MINIMAX_M2_REVISION,
    REPO_ID,
    make_minimax_m2_repo,
    minimax_m2_files,
    read_safetensors_header,
    real_file_names,
    shard_names,
    shard_tensor_names,
)
from hubdouble.repos import build_repos
from hubdouble.snapshot_module import REPO_ROOT, run_module

MANIFEST = ".llmfleet-manifest.json"


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return minimax_m2_files()


def test_the_repository_holds_every_real_name_once_and_nothing_else(files):
    names = real_file_names()
    assert list(files) == names
    assert len(set(names)) == len(names)
    assert {CONFIG_NAME, INDEX_NAME, "tokenizer.json", "chat_template.jinja"} <= set(names)
    assert shard_names(names)[0] == "model-00000-of-00130.safetensors"


def test_config_json_is_the_fixture_byte_for_byte(files):
    assert files[CONFIG_NAME] == (FIXTURE_DIR / CONFIG_NAME).read_bytes()
    assert json.loads(files[CONFIG_NAME])["architectures"] == ["MiniMaxM2ForCausalLM"]


def test_the_index_names_exactly_the_tensors_the_shards_hold(files):
    index = json.loads(files[INDEX_NAME])
    held: dict[str, str] = {}
    total = 0
    for shard in shard_names(list(files)):
        header = read_safetensors_header(files[shard])
        for name, entry in header.items():
            held[name] = shard
            start, end = entry["data_offsets"]
            total += end - start
    assert index["weight_map"] == held
    assert index["metadata"]["total_size"] == total
    assert set(held.values()) == set(shard_names(list(files)))


def test_shards_are_valid_safetensors_that_the_library_reads(tmp_path, files):
    from safetensors import safe_open

    shards = shard_names(list(files))
    for position in (0, 1, len(shards) - 1):
        path = tmp_path / shards[position]
        path.write_bytes(files[shards[position]])
        with safe_open(str(path), "np") as handle:
            assert sorted(handle.keys()) == sorted(shard_tensor_names(position, len(shards)))


def test_the_build_is_small_and_the_same_every_time(files):
    assert minimax_m2_files() == files
    assert sum(len(data) for data in files.values()) < 1024 * 1024


def test_the_double_gives_it_the_pinned_commit_and_a_rebuild_keeps_it(tmp_path):
    assert build_repos(tmp_path, [REPO_ID]) == {REPO_ID: MINIMAX_M2_REVISION}
    assert build_repos(tmp_path, [REPO_ID]) == {REPO_ID: MINIMAX_M2_REVISION}


def test_an_unknown_repository_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=f"no builder for acme/nothing; known: .*{REPO_ID}"):
        build_repos(tmp_path, ["acme/nothing"])


def test_the_command_line_prints_the_commits_and_what_it_changed(tmp_path):
    def build() -> dict[str, object]:
        argv = [sys.executable, "-m", "tests.hubdouble.repos", "--root", str(tmp_path), REPO_ID]
        return json.loads(
            subprocess.run(argv, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
        )

    assert build() == {"commits": {REPO_ID: MINIMAX_M2_REVISION}, "changed": [REPO_ID]}
    assert build() == {"commits": {REPO_ID: MINIMAX_M2_REVISION}, "changed": []}
    (tmp_path / REPO_ID / "master" / CONFIG_NAME).write_text("{}")
    assert build() == {"commits": {REPO_ID: MINIMAX_M2_REVISION}, "changed": [REPO_ID]}


@pytest.mark.parametrize("source", ["modelscope", "huggingface"])
def test_model_snapshot_downloads_all_of_it_pinned_through_the_real_client(source, hub_double, tmp_path):
    repo = make_minimax_m2_repo(hub_double.root)
    args = {
        "model": REPO_ID,
        "source": source,
        "endpoint": hub_double.url,
        "revision": MINIMAX_M2_REVISION,
        "models_root": str(tmp_path / "models"),
    }
    result, _ = run_module(args, tmp_path)
    snapshot = Path(result["path"])
    downloaded = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    assert downloaded == sorted([*real_file_names(), MANIFEST])
    assert (snapshot / CONFIG_NAME).read_bytes() == (FIXTURE_DIR / CONFIG_NAME).read_bytes()
    assert result["revision"] == MINIMAX_M2_REVISION
    assert snapshot == tmp_path / "models" / REPO_ID / MINIMAX_M2_REVISION
    assert result["total_bytes"] == tree_bytes(repo)
    assert hub_double.file_requests(REPO_ID) == dict.fromkeys(real_file_names(), 1)
