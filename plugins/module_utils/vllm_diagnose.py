"""Read a vLLM server's log and say why it is not serving, and what to do about it."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    fix: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.cause}: {self.fix} (log: {self.evidence.strip()[:300]})"


_BROKEN_CONFIG = (
    "the model's config.json cannot be read as a valid model configuration",
    "fetch the snapshot again with model_weights_verify: full (it re-hashes every file), or check "
    "model_weights_repo_id and model_weights_revision name a model vLLM serves",
)

# Most specific first: the first pattern that matches a log line names the cause.
KNOWN_FAILURES: tuple[tuple[str, str, str], ...] = (
    (
        r"Failed to infer device type",
        "vLLM found no device to run on: the GPU build sees no NVIDIA GPU (Failed to infer device type)",
        "check that nvidia-smi lists the GPUs on the host and that /dev/nvidia* exist; a driver installed "
        "but not loaded needs a reboot (nvidia_driver_reboot_allowed: true); a host without GPUs is "
        "planned for the CPU build once its nvidia-smi reports no GPU",
    ),
    (
        r"Python\.h: No such file or directory",
        "torch cannot compile its kernels without the Python headers",
        "install the OS package with the headers of the host's Python (python3-dev on Debian/Ubuntu, "
        "python3-devel on RHEL), or add --enforce-eager",
    ),
    (
        r"InvalidCxxCompiler|No working C\+\+ compiler",
        "torch cannot find a C++ compiler",
        "install g++ on the host (the CPU build of vLLM compiles kernels at start)",
    ),
    (
        r"libnuma\S* ?(?:: )?(?:cannot open|not found|No such file)|init_cpu_memory_env.*(?:fail|[Ee]rror)",
        "the CPU worker cannot use NUMA",
        "install libnuma1 on the host",
    ),
    (
        r"CUDA out of memory|OutOfMemoryError",
        "the GPUs ran out of memory while loading",
        "lower llmfleet_plan_overrides.gpu_memory_utilization or max_model_len, or use more GPUs",
    ),
    (
        r"No available memory for the cache blocks|is larger than the maximum number of tokens that can be stored in KV cache",
        "the KV cache does not fit the memory left after the weights",
        "lower max_model_len or max_num_seqs in llmfleet_plan_overrides, or raise gpu_memory_utilization",
    ),
    (
        r"(?:PermissionError|Permission denied).*?(?:model|safetensors|config\.json)",
        "the service user cannot read the model files",
        "make the snapshot readable by the service user (directories 0755, files 0644)",
    ),
    (
        r"FileNotFoundError|No such file or directory: .*(?:config\.json|safetensors)|does not appear to have a file named"
        r"|Invalid repository ID or local directory specified|Cannot find any model weights",
        "the model files are missing or unreadable",
        "check the model path (vllm_service_model_path), that model_weights_allow_patterns keeps config.json and the "
        "weights, and that the service user can read them (a 0600 file owned by root shows as missing)",
    ),
    # "Error: ": the exception's message, not the line of source that raises it
    (
        r"Error: .*(?:is not a valid JSON file|is not a multiple of the number of attention heads)",
        *_BROKEN_CONFIG,
    ),
    (
        r"not divisible by|does not divide|must be divisible",
        "the parallel layout does not fit the model",
        "let the plan choose the layout (llmfleet_plan_overrides.layout) instead of hand-set flags",
    ),
    (
        r"Address already in use",
        "the port is taken by another process",
        "stop the other process or set vllm_service_port",
    ),
    (
        r"[Hh]ead size \d+ is not supported",
        "the CPU attention backend does not support this model's head size",
        "serve this model on GPUs",
    ),
    (
        r"VLLM_ENGINE_READY_TIMEOUT_S|timed out waiting for the engine",
        "the engine took longer to start than allowed",
        "raise VLLM_ENGINE_READY_TIMEOUT_S (llmfleet_plan_overrides or vllm_service_env)",
    ),
    (
        r"unrecognized arguments|error: argument",
        "vLLM refused its command line",
        "remove or fix the flag in vllm_service_extra_args (it may not exist in this vLLM version)",
    ),
    (r"Error parsing config for", *_BROKEN_CONFIG),
    (
        r"Engine core initialization failed|EngineCore failed to start|Worker failed with error",
        "the engine failed to start",
        "read the log lines above the failure for the first error",
    ),
)
_COMPILED = tuple((re.compile(p), cause, fix) for p, cause, fix in KNOWN_FAILURES)
# Only lines that report a failure count: vLLM logs plenty of warnings that mention the same words.
# "Value error, ..." is how pydantic reports a refused config value (e.g. vLLM's ModelConfig), on its own line.
_FAILURE_LINE = re.compile(
    r"\bERROR\b|CRITICAL|Error\b|error:|Exception|Traceback|fatal|[Ff]ailed|\bexc\.\w+:|^\s*Value error, "
)
_WARNING_LINE = re.compile(r"\bWARNING\b|\bWarning:|UserWarning|FutureWarning|DeprecationWarning")


def is_failure_line(line: str) -> bool:
    return bool(_FAILURE_LINE.search(line)) and not _WARNING_LINE.search(line)


def diagnose(log_lines: list[str]) -> Diagnosis | None:
    """The first known failure in the log, most specific pattern first."""
    failures = [line for line in log_lines if is_failure_line(line)]
    for pattern, cause, fix in _COMPILED:
        for line in failures:
            if pattern.search(line):
                return Diagnosis(cause=cause, fix=fix, evidence=line)
    return None
