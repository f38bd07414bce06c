"""What a vLLM release needs from its host (CUDA vs driver, triton-kernels), and its install proof."""

import json

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_release import (
    build_cuda,
    driver_problem,
    proof_problems,
    triton_kernels_problem,
    wheel_platform,
)

# Lines of the lock vllm==0.33.0 resolves to on the package index (Python 3.11, manylinux_2_36).
CUDA13_LOCK = """\
nvidia-cuda-nvrtc==13.0.88 \\
    --hash=sha256:00
nvidia-cuda-runtime==13.0.96 \\
    --hash=sha256:00
torch==2.14.0 \\
    --hash=sha256:00
"""
CUDA12_LOCK = "nvidia-cuda-runtime-cu12==12.8.90 \\\n    --hash=sha256:00\n"
CPU_LOCK = "torch==2.13.0+cpu \\\n    --hash=sha256:00\nvllm-cpu==0.32.0\n"

H100_580 = {"driver_version": "580.95.05", "cuda_version": "13.0"}
H100_570 = {"driver_version": "570.172.08", "cuda_version": "12.8"}


@pytest.mark.parametrize(
    ("lock", "cuda"), [(CUDA13_LOCK, "13.0"), (CUDA12_LOCK, "12.8"), (CPU_LOCK, None), ("", None)]
)
def test_the_cuda_of_a_lock(lock, cuda):
    assert build_cuda(lock) == cuda


def test_a_driver_of_the_build_cuda_major_runs_it():
    assert driver_problem("13.0", H100_580, "gpu-01") == ""
    assert driver_problem("12.8", {"driver_version": "550.54.15", "cuda_version": "12.4"}, "gpu-01") == ""


def test_a_driver_too_old_for_the_build_names_the_branch_that_would_do():
    problem = driver_problem("13.0", H100_570, "gpu-07")
    assert problem.startswith("host gpu-07: this vLLM build runs CUDA 13.0")
    assert "driver 570.172.08 supports CUDA 12.8 at most" in problem
    assert "nvidia_driver_branch: '580'" in problem


def test_nothing_to_check_without_a_gpu_build_or_driver_facts():
    assert driver_problem(None, H100_570, "h") == ""
    assert driver_problem("13.0", {}, "h") == ""
    assert driver_problem("13.0", None, "h") == ""


@pytest.mark.parametrize(
    "requirement",
    [
        "/srv/wheels/triton_kernels-3.5.0-py3-none-any.whl",
        "triton-kernels @ https://mirror.example/triton_kernels-3.5.0-py3-none-any.whl",
        "triton-kernels @ git+https://github.com/triton-lang/triton.git@v3.5.0#subdirectory=python/triton_kernels",
        "flash-attn==2.8.3",
    ],
)
def test_triton_kernels_forms_that_can_be_the_right_package(requirement):
    assert triton_kernels_problem(requirement) == ""


@pytest.mark.parametrize("requirement", ["triton-kernels", "triton-kernels==3.5.0", "triton_kernels>=0.1"])
def test_the_unrelated_pypi_project_is_refused(requirement):
    problem = triton_kernels_problem(requirement)
    assert "unrelated package" in problem
    assert repr(requirement) in problem


GOOD_CUDA_PROOF = {"vllm": "0.33.0", "torch": "2.14.0+cu130", "torch_cuda": "13.0", "api_server_help": True}


# What a host prints: vLLM logs and warnings (the become tty merges stderr), then the result.
LOGS = (
    "INFO 12-06 22:08:01 [__init__.py:216] Automatically detected platform cpu.\r\nDeprecationWarning: x\r\n"
)


def output(proof: dict) -> str:
    return LOGS + json.dumps(proof) + "\r\n"


def test_a_release_that_proves_itself():
    assert proof_problems(output(GOOD_CUDA_PROOF), "0.33.0", "13.0", 8) == []
    cpu = {"vllm": "0.32.0+cpu", "torch": "2.13.0+cpu", "torch_cuda": None, "api_server_help": True}
    assert proof_problems(output(cpu), "0.32.0", None, 0) == []


def test_a_proof_that_printed_no_result():
    problems = proof_problems(LOGS + "Traceback (most recent call last):\n", "0.33.0", "13.0", 8)
    assert problems[0].startswith("the proof printed no result")
    assert "Traceback" in problems[0]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"vllm": "0.32.1"}, "vllm 0.32.1 is installed, not the pinned 0.33.0"),
        ({"api_server_help": False}, "did not print its help"),
        ({"torch_cuda": "12.8"}, "torch is built for CUDA 12.8, the lock pins CUDA 13.0"),
        ({"cuda_devices": 0}, "torch sees 0 GPU(s) of the 8 the plan uses"),
    ],
)
def test_each_failed_proof_is_named(change, words):
    problems = proof_problems(output(GOOD_CUDA_PROOF | change), "0.33.0", "13.0", 8)
    assert len(problems) == 1
    assert words in problems[0]


@pytest.mark.parametrize(
    ("glibc", "platform"),
    [("2.36", "x86_64-manylinux_2_36"), ("2.40", "x86_64-manylinux_2_40"), ("2.41", "x86_64-manylinux_2_40")],
)
def test_the_wheels_platform_follows_the_hosts_glibc_up_to_the_newest_tag_uv_knows(glibc, platform):
    """Debian 13's glibc 2.41 has no manylinux tag of its own in uv 0.13: its wheels are 2.40's."""
    assert wheel_platform("x86_64", glibc) == platform


@pytest.mark.parametrize("glibc", ["2.12", "musl", ""])
def test_a_glibc_the_wheels_cannot_serve_is_refused(glibc):
    with pytest.raises(ValueError, match="glibc"):
        wheel_platform("x86_64", glibc)
