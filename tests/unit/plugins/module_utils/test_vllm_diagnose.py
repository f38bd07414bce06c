from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_diagnose import diagnose

ENGINE_FAILED = (
    "(EngineCore pid=937) ERROR [core.py:1510] RuntimeError: Worker failed with error 'CppCompileError'"
)


@pytest.mark.parametrize(
    ("line", "fix_words"),
    [
        ("main.cpp:80:10: fatal error: Python.h: No such file or directory", "python3-dev"),
        ("torch._inductor.exc.InvalidCxxCompiler: No working C++ compiler found", "install g++"),
        ("RuntimeError: init_cpu_memory_env failed", "libnuma1"),
        ("ImportError: libnuma.so.1: cannot open shared object file", "libnuma1"),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "gpu_memory_utilization"),
        ("ValueError: No available memory for the cache blocks. Try increasing", "max_model_len"),
        ("PermissionError: [Errno 13] Permission denied: '/srv/models/x/model.safetensors'", "0644"),
        ("OSError: /srv/m does not appear to have a file named config.json", "model path"),
        ("AssertionError: 1536 is not divisible by 8", "llmfleet_plan_overrides.layout"),
        ("OSError: [Errno 98] Address already in use", "vllm_service_port"),
        ("api_server.py: error: unrecognized arguments: --bogus", "vllm_service_extra_args"),
    ],
)
def test_known_failures_name_the_fix(line, fix_words):
    diagnosis = diagnose(["INFO starting", line, ENGINE_FAILED])
    assert diagnosis is not None
    assert fix_words in diagnosis.fix
    assert line.strip()[:60] in str(diagnosis)


def test_the_specific_cause_wins_over_the_generic_engine_failure():
    lines = [ENGINE_FAILED, "fatal error: Python.h: No such file or directory"]
    assert "Python headers" in diagnose(lines).cause


def test_generic_engine_failure():
    assert diagnose([ENGINE_FAILED]).cause == "the engine failed to start"


def test_healthy_log_has_no_diagnosis():
    assert diagnose(["INFO Starting vLLM API server", "INFO Application startup complete."]) is None


def test_warnings_that_mention_the_same_words_are_not_failures():
    lines = [
        "[W1125 09:22:37 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy (function init_cpu_memory_env)",
        "(Worker pid=570) WARNING [cpu_worker.py:114] libtcmalloc is not found in LD_PRELOAD.",
        "UserWarning: Failed to get the IP address, using 0.0.0.0 by default.",
    ]
    assert diagnose(lines) is None


def test_the_gpu_build_on_a_host_without_a_visible_gpu():
    """Recorded from the CUDA build of vLLM 0.33.0 started on a host where no GPU answers."""
    log = Path(__file__).parents[3] / "fixtures" / "vllm-logs" / "cuda-build-no-gpu.log"
    diagnosis = diagnose(log.read_text().splitlines())
    assert diagnosis is not None
    assert "Failed to infer device type" in diagnosis.cause
    assert "nvidia-smi" in diagnosis.fix
    assert "RuntimeError: Failed to infer device type" in diagnosis.evidence
