"""Unit tests for module_utils/weights_fanout.py and its filter shells (plugins/filter/model_weights.py)."""

from __future__ import annotations

import copy
import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.filter import model_weights as plugin
from ansible_collections.llmfleet.serve.plugins.module_utils import weights_fanout as wf

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILTERS = plugin.FilterModule().filters()


def manifest(files: list[tuple[str, int, str]], model: str = "acme/tiny", revision: str = COMMIT) -> dict:
    return {
        "format": 1,
        "model": model,
        "revision": revision,
        "revision_requested": "master",
        "revision_is_commit": True,
        "source": "modelscope",
        "endpoint": "http://hub:8765",
        "allow_patterns": [],
        "ignore_patterns": [],
        "created": "2026-11-25T09:00:00Z",
        "files": [
            {"path": p, "size": s, "sha256": h, "git_sha1": None, "checked_by": "sha256"} for p, s, h in files
        ],
    }


ORIGIN_FILES = [
    ("config.json", 522, "a" * 64),
    ("model.safetensors", 787152, "b" * 64),
    ("sub/t.json", 9, "c" * 64),
]


# ---- snapshot_delta -------------------------------------------------------------------------------------------
def test_delta_without_host_manifest_sends_everything():
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), None)
    assert delta == {
        "same": False,
        "send": ["config.json", "model.safetensors", "sub/t.json"],
        "send_bytes": 522 + 787152 + 9,
        "files_total": 3,
        "total_bytes": 522 + 787152 + 9,
        "host_manifest": "missing",
    }


def test_delta_identical_host_is_same_and_sends_nothing():
    host = manifest(ORIGIN_FILES)
    host["source"] = "local"  # landed from the controller's copy: other source, endpoint, time
    host["endpoint"] = None
    host["created"] = "2026-11-26T10:00:00Z"
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), host)
    assert delta["same"] is True
    assert delta["send"] == []
    assert delta["send_bytes"] == 0
    assert delta["host_manifest"] == "valid"


def test_delta_changed_hash_sends_that_file_only():
    host_files = copy.deepcopy(ORIGIN_FILES)
    host_files[1] = ("model.safetensors", 787152, "d" * 64)
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), manifest(host_files))
    assert delta["same"] is False
    assert delta["send"] == ["model.safetensors"]
    assert delta["send_bytes"] == 787152


def test_delta_host_with_extra_files_is_not_same_but_sends_nothing():
    host = manifest([*ORIGIN_FILES, ("extra.bin", 5, "e" * 64)])
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), host)
    assert delta["same"] is False
    assert delta["send"] == []


def test_delta_other_revision_is_not_same():
    other = "f" * 40
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), manifest(ORIGIN_FILES, revision=other))
    assert delta["same"] is False
    assert delta["send"] == []


def test_delta_unreadable_host_manifest_sends_everything():
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), {"format": 99, "files": []})
    assert delta["host_manifest"] == "unreadable"
    assert delta["same"] is False
    assert len(delta["send"]) == 3


def test_delta_bad_origin_manifest_is_refused_with_its_name():
    with pytest.raises(wf.FanoutError, match="origin manifest: unsupported manifest format"):
        wf.snapshot_delta({"format": 2}, None)
    with pytest.raises(AnsibleFilterError, match="origin manifest"):
        FILTERS["snapshot_delta"]({"format": 2})


# ---- peer_seeds -----------------------------------------------------------------------------------------------
def test_one_seed_for_the_play_by_default():
    assert wf.peer_seeds(["b", "a", "c"]) == {"b": "b", "a": "b", "c": "b"}


def test_one_seed_per_group_in_play_order():
    seeds = FILTERS["peer_seeds"](
        ["r1a", "r2a", "r1b", "r2b", "x"], {"r1a": "rack1", "r1b": "rack1", "r2a": "rack2", "r2b": "rack2"}
    )
    assert seeds == {"r1a": "r1a", "r1b": "r1a", "r2a": "r2a", "r2b": "r2a", "x": "x"}


def test_delta_reads_the_host_manifest_as_json_text():
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), json.dumps(manifest(ORIGIN_FILES)))
    assert delta["same"] is True
    assert delta["host_manifest"] == "valid"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format": 1}'])
def test_delta_host_manifest_text_that_cannot_be_read(text):
    delta = wf.snapshot_delta(manifest(ORIGIN_FILES), text)
    assert delta["host_manifest"] == "unreadable"
    assert delta["send"] == ["config.json", "model.safetensors", "sub/t.json"]
