import shlex

from ansible_collections.llmfleet.serve.plugins.module_utils.service_args import (
    extra_args_conflicts,
    parse_flags,
    systemd_exec,
    systemd_quote,
)

PLAN = ["--tensor-parallel-size", "8", "--enable-expert-parallel", "--max-model-len", "196608"]


def test_parse_flags_forms():
    flags = parse_flags(["--a", "1", "--b=2", "--c", "-tp", "4", "--d_e", "x"])
    assert flags == {"--a": "1", "--b": "2", "--c": None, "--tensor-parallel-size": "4", "--d-e": "x"}


def test_unrelated_and_agreeing_flags_pass():
    assert extra_args_conflicts(PLAN, ["--enforce-eager", "--tensor-parallel-size=8", "--seed", "7"]) == []


def test_conflicting_parallel_size_fails_and_says_how_to_fix():
    [error] = extra_args_conflicts(PLAN, ["--tensor-parallel-size", "4"])
    assert "sets --tensor-parallel-size 4, but the plan has --tensor-parallel-size 8" in error
    assert "llmfleet_plan_overrides" in error


def test_flag_the_plan_leaves_unset_fails_too():
    [error] = extra_args_conflicts(PLAN, ["-dp", "2"])
    assert "--data-parallel-size 2, but the plan has --data-parallel-size not set" in error


def test_systemd_quote():
    assert systemd_quote("--port") == "--port"
    assert systemd_quote("/srv/models/MiniMaxAI/MiniMax-M2") == "/srv/models/MiniMaxAI/MiniMax-M2"
    assert systemd_quote("100%") == "100%%"
    assert systemd_quote("a b") == '"a b"'
    assert systemd_quote('{"k": "$v"}') == '"{\\"k\\": \\"$$v\\"}"'


def test_systemd_exec_round_trips_like_a_shell_word_list():
    argv = ["/opt/llmfleet/current/bin/python", "-m", "vllm", '{"a": 1}', "x y"]
    assert shlex.split(systemd_exec(argv)) == argv
