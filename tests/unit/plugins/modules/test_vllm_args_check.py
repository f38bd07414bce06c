"""The vllm_args_check module shell: its options, what it sets before importing vLLM, and its results."""

from __future__ import annotations

import argparse
import os
from types import SimpleNamespace
from typing import Any

import pytest

from ansible_collections.llmfleet.serve.plugins.modules import vllm_args_check


def make_arg_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model")
    parser.add_argument("--tool-call-parser")
    return parser


def fake_vllm() -> dict[str, Any]:
    return {
        "vllm": SimpleNamespace(__version__="0.33.0"),
        "vllm.entrypoints.common.cli_args": SimpleNamespace(make_arg_parser=make_arg_parser),
        "vllm.utils.argparse_utils": SimpleNamespace(FlexibleArgumentParser=argparse.ArgumentParser),
        "vllm.tool_parsers": SimpleNamespace(
            ToolParserManager=SimpleNamespace(lazy_parsers={"minimax_m2": ("m", "C")})
        ),
        "vllm.reasoning": SimpleNamespace(ReasoningParserManager=SimpleNamespace(lazy_parsers={})),
    }


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """A fake vLLM behind the module's imports; records VLLM_TARGET_DEVICE as the vllm import saw it."""
    seen: dict[str, str | None] = {}
    modules = fake_vllm()
    monkeypatch.delenv("VLLM_TARGET_DEVICE", raising=False)

    def import_module(name: str) -> Any:
        if name == "vllm":
            seen["VLLM_TARGET_DEVICE"] = os.environ.get("VLLM_TARGET_DEVICE")
        if name not in modules:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return modules[name]

    monkeypatch.setattr(vllm_args_check, "importlib", SimpleNamespace(import_module=import_module))
    return seen


def test_argument_spec_matches_documentation(documented_spec):
    assert documented_spec(vllm_args_check)["argv"]["required"]


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check-mode"])
def test_an_accepted_line_changes_nothing(run_module, installed, check_mode):
    result = run_module(
        vllm_args_check,
        {"argv": ["--model", "/srv/m", "--tool-call-parser", "minimax_m2"]},
        check_mode=check_mode,
    )
    assert not result.get("failed") and result["changed"] is False
    assert result["accepted"] is True
    assert result["vllm_version"] == "0.33.0"
    assert result["parser_from"] == "vllm.entrypoints.common.cli_args.make_arg_parser"
    assert result["refused"] == []


def test_vllm_is_imported_with_the_cpu_platform(run_module, installed):
    run_module(vllm_args_check, {"argv": ["--model", "/srv/m"]})
    assert installed["VLLM_TARGET_DEVICE"] == "cpu"


def test_a_refused_line_fails_with_vllms_message(run_module, installed):
    result = run_module(vllm_args_check, {"argv": ["--model", "/srv/m", "--no-such-flag"]})
    assert result["failed"] and result["accepted"] is False
    assert result["msg"] == "unrecognized arguments: --no-such-flag"
    assert result["refused"] == ["--no-such-flag"]


def test_an_unknown_tool_parser_fails_with_the_known_ones(run_module, installed):
    result = run_module(vllm_args_check, {"argv": ["--tool-call-parser", "minimax_m9"]})
    assert (
        result["msg"]
        == "--tool-call-parser minimax_m9 is not a tool call parser of this vLLM; known: minimax_m2"
    )


def test_a_python_without_vllm_is_named(run_module, monkeypatch):
    def no_vllm(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named '{name}'")

    monkeypatch.setattr(vllm_args_check, "importlib", SimpleNamespace(import_module=no_vllm))
    result = run_module(vllm_args_check, {"argv": []})
    assert result["failed"]
    assert result["msg"].startswith("cannot import vLLM with ")
    assert "ModuleNotFoundError: No module named 'vllm'" in result["msg"]
