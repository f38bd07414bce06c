import shlex

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.service_args import (
    extra_args_conflicts,
    parse_flags,
    start_limit_interval_s,
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


@pytest.mark.parametrize(
    "extra", [["--kv-cache-dtype", "fp8"], ["--enable-auto-tool-choice"], ["--port", "9000"]]
)
def test_every_flag_the_plan_or_the_service_decides_is_refused_by_hand(extra):
    [error] = extra_args_conflicts(PLAN, extra)
    assert extra[0] in error


def test_systemd_quote():
    assert systemd_quote("--port") == "--port"
    assert systemd_quote("/srv/models/MiniMaxAI/MiniMax-M2") == "/srv/models/MiniMaxAI/MiniMax-M2"
    assert systemd_quote("100%") == "100%%"
    assert systemd_quote("a b") == '"a b"'
    assert systemd_quote('{"k": "$v"}') == '"{\\"k\\": \\"$$v\\"}"'


def test_systemd_exec_round_trips_like_a_shell_word_list():
    argv = ["/opt/llmfleet/current/bin/python", "-m", "vllm", '{"a": 1}', "x y"]
    assert shlex.split(systemd_exec(argv)) == argv


def limit_trips(interval_s: int, burst: int, cycle_s: int, starts: int = 50) -> bool:
    """Whether systemd's start limit refuses one of ``starts`` starts ``cycle_s`` apart (its ratelimit_below():
    a window opens at a start, and a start is refused when it makes the count exceed the burst within the
    interval of the window's first start)."""
    begin, count = None, 0
    for index in range(starts):
        now = index * cycle_s
        if begin is None or now - begin > interval_s:
            begin, count = now, 1
            continue
        count += 1
        if count > burst:
            return True
    return False


THIRTY_MINUTES_S = 30 * 60


def test_a_load_that_fails_after_30_minutes_trips_the_limit():
    interval = start_limit_interval_s(THIRTY_MINUTES_S, restart_sec=10, stop_timeout_s=90, burst=5)
    assert interval == 5 * (THIRTY_MINUTES_S + 10 + 90)
    assert limit_trips(interval, burst=5, cycle_s=THIRTY_MINUTES_S + 10 + 90)


def test_faster_failures_trip_it_sooner():
    interval = start_limit_interval_s(THIRTY_MINUTES_S, restart_sec=10, stop_timeout_s=90, burst=5)
    assert limit_trips(interval, burst=5, cycle_s=40)


def test_the_old_fixed_interval_never_trips_for_a_slow_failure():
    assert not limit_trips(600, burst=5, cycle_s=THIRTY_MINUTES_S + 10)


def test_one_second_less_would_not_trip():
    cycle = THIRTY_MINUTES_S + 10 + 90
    interval = start_limit_interval_s(THIRTY_MINUTES_S, restart_sec=10, stop_timeout_s=90, burst=5)
    assert not limit_trips(interval - 1, burst=5, cycle_s=cycle)


def test_a_burst_below_one_is_refused():
    with pytest.raises(ValueError, match="burst must be 1 or more, not 0"):
        start_limit_interval_s(600, restart_sec=10, stop_timeout_s=90, burst=0)
