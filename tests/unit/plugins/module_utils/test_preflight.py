from pathlib import Path

import pytest
import yaml

from ansible_collections.llmfleet.serve.plugins.module_utils.preflight import (
    RoleSpec,
    check_ansible_version,
    check_host_vars,
    check_os,
    describe_accepted,
    role_spec,
)

REPO = Path(__file__).resolve().parents[4]

SPECS = [
    role_spec(
        "vllm_service",
        {
            "argument_specs": {
                "main": {
                    "options": {
                        "vllm_service_port": {"type": "int", "default": 8000},
                        "vllm_service_api_key": {"type": "dict", "no_log": True},
                        "vllm_service_reasoning_parser": {
                            "type": "str",
                            "choices": ["minimax_m2", "minimax_m2_append_think"],
                        },
                        "vllm_service_extra_args": {"type": "list", "elements": "str", "default": []},
                    }
                }
            }
        },
    ),
    RoleSpec("preflight", {"llmfleet_model": {"type": "str"}}),
]


def test_good_values_pass():
    provided = {
        "vllm_service_port": "8001",
        "vllm_service_reasoning_parser": "minimax_m2",
        "vllm_service_extra_args": ["--enforce-eager"],
        "llmfleet_model": "minimax-m2",
        "unrelated_user_variable": 3,
        "llmfleet_gpu": {"count": 0},
        "llmfleet_runtime": {"id": "vllm-cpu-0.32.0-abc"},
        "llmfleet_model_path": "/var/lib/llmfleet/models/x",
    }
    assert check_host_vars("gpu-01", provided, SPECS) == []


def test_wrong_type_names_host_variable_value_and_accepted():
    [error] = check_host_vars("gpu-01", {"vllm_service_port": "eighty"}, SPECS)
    assert error.startswith("host gpu-01: vllm_service_port = 'eighty' is not accepted")
    assert error.endswith("accepted: an int")


def test_bad_choice_lists_the_choices():
    [error] = check_host_vars("gpu-02", {"vllm_service_reasoning_parser": "deepseek_r1"}, SPECS)
    assert "host gpu-02: vllm_service_reasoning_parser = 'deepseek_r1'" in error
    assert "accepted: one of: minimax_m2, minimax_m2_append_think" in error


def test_bad_list_element_type():
    [error] = check_host_vars("gpu-03", {"vllm_service_extra_args": {"a": 1}}, SPECS)
    assert "vllm_service_extra_args" in error
    assert "a list, each element a str" in error


def test_secret_value_is_never_shown():
    [error] = check_host_vars("gpu-04", {"vllm_service_api_key": "s3cret-value"}, SPECS)
    assert "<hidden>" in error
    assert "s3cret" not in error


def test_unknown_variable_with_a_known_prefix_suggests_the_right_name():
    [error] = check_host_vars("gpu-05", {"vllm_service_prot": 8000}, SPECS)
    assert (
        error
        == "host gpu-05: vllm_service_prot is not a variable of llmfleet; did you mean vllm_service_port?"
    )
    [error] = check_host_vars("gpu-05", {"llmfleet_modle": "x"}, SPECS)
    assert "did you mean llmfleet_model?" in error


class NoCopyList(list):
    """Like the lazy containers a filter receives: deep-copying it is what must not happen."""

    def __deepcopy__(self, memo):
        raise AssertionError("the validator was given the container itself")


class NoCopyDict(dict):
    def __deepcopy__(self, memo):
        raise AssertionError("the validator was given the container itself")


def test_containers_are_validated_as_plain_copies():
    host_vars = {
        "vllm_service_extra_args": NoCopyList(["--a", "--b"]),
        "vllm_service_api_key": NoCopyDict({"k": NoCopyList(["v"])}),
    }
    assert check_host_vars("gpu-06", host_vars, SPECS) == []
    [error] = check_host_vars("gpu-06", {"vllm_service_port": NoCopyList([NoCopyDict(a=1)])}, SPECS)
    assert "vllm_service_port = [{'a': 1}] is not accepted" in error


@pytest.mark.parametrize(
    ("distribution", "version", "ok"),
    [
        ("Debian", "12.7", True),
        ("Ubuntu", "24.04", True),
        ("Ubuntu", "20.04", False),
        ("Fedora", "41", False),
    ],
)
def test_os(distribution, version, ok):
    supported = {"Debian": ["12"], "Ubuntu": ["22", "24"]}
    errors = check_os("h1", distribution, version, supported)
    assert (errors == []) is ok
    if not ok:
        assert errors[0].startswith(f"host h1: the OS {distribution} {version} is not supported")
        assert "accepted: Debian 12; Ubuntu 22, 24" in errors[0]


def test_ansible_version_bounds():
    assert check_ansible_version("2.21.5", "2.19.0", "2.22.0") == []
    assert check_ansible_version("2.22.0rc1", "2.19.0", "2.22.0") != []
    [error] = check_ansible_version("2.18.3", "2.19.0", "2.22.0")
    assert error == "ansible-core 2.18.3 is not supported; accepted: >= 2.19.0 and < 2.22.0"


def test_describe_accepted():
    assert describe_accepted({"type": "dict", "options": {"b": {}, "a": {}}}) == "a dict with keys: a, b"
    assert describe_accepted({"type": "bool"}) == "a bool"


@pytest.mark.parametrize(
    ("version", "ok"),
    [("12.7", True), ("13", True), ("13.1", True), ("11.11", False), ("14", False)],
)
def test_the_shipped_os_list_accepts_debian_12_and_13(version, ok):
    """roles/preflight's default list (its argument spec agrees: tests/unit/roles/test_argument_specs.py)."""
    defaults = yaml.safe_load((REPO / "roles/preflight/defaults/main.yml").read_text())
    errors = check_os("gpu-07", "Debian", version, defaults["preflight_supported_os"])
    assert (errors == []) is ok
    if not ok:
        assert errors[0].startswith(
            f"host gpu-07: the OS Debian {version} is not supported; accepted: Debian 12, 13;"
        )
