"""Filters for the vllm_runtime role: what a release needs from its host, and its install proof."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmfleet.serve.plugins.module_utils import vllm_release as vr


def vllm_runtime_wheel_platform(machine: str, glibc: str) -> str:
    """``machine | llmfleet.serve.vllm_runtime_wheel_platform(glibc)``: the wheels' platform for a host."""
    try:
        return vr.wheel_platform(machine, glibc)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def vllm_runtime_build_cuda(lock_text: str) -> str | None:
    """``lookup('file', lock) | llmfleet.serve.vllm_runtime_build_cuda``: the CUDA a lock's build runs."""
    return vr.build_cuda(lock_text)


def vllm_runtime_driver_problem(cuda: str | None, gpu_facts: dict[str, Any] | None, host: str) -> str:
    """Why the host's driver (GPU facts) cannot run a build of that CUDA; empty when it can."""
    return vr.driver_problem(cuda, gpu_facts, host)


def vllm_runtime_triton_kernels_problem(requirement: str) -> str:
    """Why a triton-kernels requirement names the wrong package; empty when it can be right."""
    return vr.triton_kernels_problem(requirement)


def vllm_runtime_proof_problems(output: str, version: str, cuda: str | None, gpu_count: Any) -> list[str]:
    """What an install proof's output says is wrong with a release (empty: it proved itself)."""
    return vr.proof_problems(output, str(version), cuda, int(gpu_count or 0))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "vllm_runtime_wheel_platform": vllm_runtime_wheel_platform,
            "vllm_runtime_build_cuda": vllm_runtime_build_cuda,
            "vllm_runtime_driver_problem": vllm_runtime_driver_problem,
            "vllm_runtime_triton_kernels_problem": vllm_runtime_triton_kernels_problem,
            "vllm_runtime_proof_problems": vllm_runtime_proof_problems,
        }
