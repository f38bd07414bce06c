from pathlib import Path

import pytest

from ansible_collections.llmfleet.serve.plugins.module_utils.vllm_diagnose import diagnose
from ansible_collections.llmfleet.serve.plugins.modules.vllm_ready import JOURNAL_LINES

LOGS = Path(__file__).parents[3] / "fixtures" / "vllm-logs"
# What systemd itself logs about a unit whose server exits; ``journalctl --unit`` shows it among the server's lines.
SYSTEMD_EXIT = [
    "vllm.service: Main process exited, code=exited, status=1/FAILURE",
    "vllm.service: Failed with result 'exit-code'.",
]

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


def recorded(name: str) -> list[str]:
    """A recorded log, as the server printed it (SOURCES.md beside the logs says how each was made)."""
    return (LOGS / f"{name}.log").read_text().splitlines()


def as_journal(name: str) -> list[str]:
    """The same log as vllm_ready reads it: the last lines of ``journalctl --output cat``, where journald
    splits the stream into entries at newlines only, followed by systemd's own lines about the exit (which name
    no cause: a healthy log must stay undiagnosed with them)."""
    entries = [*(LOGS / f"{name}.log").read_text().rstrip("\n").split("\n"), *SYSTEMD_EXIT]
    return "\n".join(entries[-JOURNAL_LINES:]).splitlines()


# log, words of the cause, words of the fix (the setting to change), words of the line that shows it
RECORDED_FAILURES = [
    (
        "cuda-build-no-gpu",
        "Failed to infer device type",
        "nvidia-smi",
        "RuntimeError: Failed to infer device type",
    ),
    (
        "unknown-flag",
        "refused its command line",
        "vllm_service_extra_args",
        "unrecognized arguments: --tensor-paralel-size",
    ),
    (
        "missing-config",
        "model files are missing",
        "vllm_service_model_path",
        "Invalid repository ID or local directory specified: '/srv/models/missing-config'",
    ),
    (
        "missing-weights",
        "model files are missing",
        "model_weights_allow_patterns",
        "RuntimeError: Cannot find any model weights with `/srv/models/missing-weights`",
    ),
    (
        "config-invalid-json",
        "config.json cannot be read",
        "model_weights_verify: full",
        "OSError: It looks like the config file at '/srv/models/config-invalid-json/config.json' is not a valid JSON",
    ),
    (
        # not the parallel layout's "not divisible": the model itself is inconsistent
        "config-heads-not-dividing",
        "config.json cannot be read",
        "model_weights_revision",
        "ValueError: The hidden size (128) is not a multiple of the number of attention heads (3).",
    ),
    (
        # run as a user who cannot read the file: vLLM says it does not exist
        "unreadable-weights",
        "missing or unreadable",
        "service user can read",
        "FileNotFoundError: No such file or directory: /srv/models/unreadable-weights/model.safetensors",
    ),
    ("port-in-use", "port is taken", "vllm_service_port", "OSError: [Errno 98] Address already in use"),
]


@pytest.mark.parametrize("shape", [recorded, as_journal], ids=["output", "journal"])
@pytest.mark.parametrize(
    ("name", "cause", "fix", "evidence"), RECORDED_FAILURES, ids=[r[0] for r in RECORDED_FAILURES]
)
def test_recorded_failures_are_named(shape, name, cause, fix, evidence):
    diagnosis = diagnose(shape(name))
    assert diagnosis is not None, f"{name}: no diagnosis"
    assert cause in diagnosis.cause
    assert fix in diagnosis.fix
    assert evidence in diagnosis.evidence


@pytest.mark.parametrize("shape", [recorded, as_journal], ids=["output", "journal"])
def test_a_recorded_healthy_start_and_stop_has_no_diagnosis(shape):
    lines = shape("healthy")
    assert any("Application startup complete" in line for line in lines)
    assert diagnose(lines) is None
