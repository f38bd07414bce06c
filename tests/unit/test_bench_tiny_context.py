"""benchmarks/bench_tiny_context.py: the memory of a server's process tree, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_tiny_context as bench  # noqa: E402


def fake_process(proc: Path, pid: int, sid: int, comm: str, rss_kib: int | None, pss_kib: int = 0) -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    # pid (comm) state ppid pgrp session ...
    (entry / "stat").write_text(f"{pid} ({comm}) S 1 {sid} {sid} 0 -1 4194560 0 0\n")
    if rss_kib is not None:
        (entry / "smaps_rollup").write_text(
            f"55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  {rss_kib} kB\nPss:  {pss_kib} kB\nShared_Clean: 1 kB\n"
        )


@pytest.fixture
def proc(tmp_path) -> Path:
    fake_process(tmp_path, 100, 100, "python", 2048, 1024)
    fake_process(tmp_path, 101, 100, "VLLM::EngineCore (x) 1", 4096, 3072)  # parentheses and spaces
    fake_process(tmp_path, 200, 200, "other (100)", 999_999, 999_999)  # another session
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")
    return tmp_path


def test_the_session_is_its_leader_and_its_children(proc):
    assert bench.session_pids(100, proc) == [100, 101]


def test_another_sessions_processes_are_left_out(proc):
    """Negative: the other session's memory, ten times the server's, is not in the sum."""
    assert bench.session_pids(200, proc) == [200]
    assert bench.tree_memory_mib(100, proc) == {"rss": 6.0, "pss": 4.0}


def test_a_process_that_exited_counts_nothing(proc):
    fake_process(proc, 102, 100, "gone", None)
    assert bench.memory_kib(102, proc) == {"Rss": 0, "Pss": 0}
    assert bench.tree_memory_mib(100, proc) == {"rss": 6.0, "pss": 4.0}


def test_a_real_session_is_found_in_proc():
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert bench.session_pids(child.pid) == [child.pid]
        assert bench.tree_memory_mib(child.pid)["rss"] > 0
        assert os.getpid() not in bench.session_pids(child.pid)
    finally:
        child.kill()
        child.wait()


def test_the_baseline_is_built_by_that_revisions_own_builder(tmp_path):
    model = bench.build_baseline("HEAD", tmp_path)
    assert (model / "config.json").is_file()
    assert (model / "model.safetensors").is_file()
