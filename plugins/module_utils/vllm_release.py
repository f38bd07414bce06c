"""What a vLLM release needs from its host, and whether an installed release proved itself."""

from __future__ import annotations

import json
import re
from typing import Any

# The CUDA runtime wheel a GPU build pins: nvidia-cuda-runtime (CUDA 13 and later) or
# nvidia-cuda-runtime-cu12 / -cu11.
_CUDA_RUNTIME_PIN = re.compile(r"^nvidia-cuda-runtime(?:-cu\d+)?==(\d+)\.(\d+)", re.MULTILINE)

# The first driver branch of each CUDA major version. Within a major version a newer toolkit runs on
# an older driver of the same major (CUDA minor version compatibility), so the major decides.
FIRST_DRIVER_BRANCH = {11: 450, 12: 525, 13: 580}

# The PyPI project of this name is an unrelated package, not Triton's kernels.
TRITON_KERNELS = "triton-kernels"
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


# The newest manylinux tag the pinned uv resolves for (uv 0.13 knows manylinux_2_17 .. 2_40). Wheels
# for an older glibc run on a newer one, so a host with a newer glibc is served this tag.
NEWEST_MANYLINUX = (2, 40)


def wheel_platform(machine: str, glibc: str) -> str:
    """The platform the wheels are chosen for, e.g. x86_64-manylinux_2_36 for Debian 12's glibc 2.36."""
    try:
        version = tuple(int(part) for part in str(glibc).split(".")[:2])
    except ValueError:
        raise ValueError(f"not a glibc version: {glibc!r}") from None
    if len(version) != 2 or version < (2, 17):
        raise ValueError(f"glibc {glibc} is older than manylinux_2_17, the oldest the wheels support")
    major, minor = min(version, NEWEST_MANYLINUX)
    return f"{machine}-manylinux_{major}_{minor}"


def build_cuda(lock_text: str) -> str | None:
    """The CUDA version (major.minor) a resolved lock's GPU build runs, or None for a CPU build."""
    match = _CUDA_RUNTIME_PIN.search(lock_text or "")
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _major(version: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", str(version or ""))
    return int(match.group(1)) if match else None


def driver_problem(cuda: str | None, gpu_facts: dict[str, Any] | None, host: str) -> str:
    """Why the host's driver cannot run a build of CUDA ``cuda``; empty when it can or nothing is known."""
    facts = gpu_facts or {}
    need, have = _major(cuda), _major(facts.get("cuda_version"))
    if need is None or have is None or have >= need:
        return ""
    branch = FIRST_DRIVER_BRANCH.get(need)
    fix = (
        f"install driver branch {branch} or newer (nvidia_driver_branch: '{branch}')"
        if branch
        else "update the driver"
    )
    return (
        f"host {host}: this vLLM build runs CUDA {cuda}, but the driver {facts.get('driver_version') or '?'} "
        f"supports CUDA {facts.get('cuda_version')} at most: {fix}, or pin a vLLM build for CUDA {have}"
    )


def triton_kernels_problem(requirement: str) -> str:
    """Why a triton-kernels requirement cannot be the right package; empty when it can."""
    match = _REQUIREMENT_NAME.match(requirement or "")
    if not match or match.group(1).lower().replace("_", "-") != TRITON_KERNELS:
        return ""
    if "@" in requirement or requirement.strip().endswith(".whl"):
        return ""
    return (
        f"vllm_runtime_triton_kernels = {requirement!r} would install the PyPI project named "
        "triton-kernels, an unrelated package. Give Triton's own: a wheel built from the Triton "
        "repository at the wanted tag (a path or URL ending in .whl, or 'triton-kernels @ <url>'), or "
        "leave it empty: current vLLM bundles the kernels it needs"
    )


def read_proof(output: str) -> dict[str, Any] | None:
    """The proof's result: the last line of its output that is a JSON object (vLLM logs come before)."""
    for line in reversed((output or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                proof = json.loads(line)
            except ValueError:
                return None
            return proof if isinstance(proof, dict) else None
    return None


def proof_problems(output: str, version: str, cuda: str | None, gpu_count: int) -> list[str]:
    """What an install proof (roles/vllm_runtime/files/prove_release.py output) says is wrong."""
    proof = read_proof(output)
    if proof is None:
        return ["the proof printed no result (its output ends: " + (output or "")[-300:] + ")"]
    problems = []
    installed = str(proof.get("vllm") or "").split("+")[0]
    if installed != version:
        problems.append(f"vllm {installed or 'is missing'} is installed, not the pinned {version}")
    if not proof.get("api_server_help"):
        problems.append("the API server did not print its help (its argument parser does not build)")
    if cuda and proof.get("torch_cuda") != cuda:
        problems.append(f"torch is built for CUDA {proof.get('torch_cuda')}, the lock pins CUDA {cuda}")
    devices = proof.get("cuda_devices")
    if devices is not None and devices != gpu_count:
        problems.append(
            f"torch sees {devices} GPU(s) of the {gpu_count} the plan uses: check that the driver is loaded "
            "and /dev/nvidia* exist (nvidia-smi), and CUDA_VISIBLE_DEVICES"
        )
    return problems
